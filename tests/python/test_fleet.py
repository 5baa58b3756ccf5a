"""Three `pseudonymd` replicas behind HAProxy (from Debian, installed by the test command),
health-checked on `/readyz`: rolling restarts and the key rotation runbook under a continuous
job, and a replica killed mid-job. Nothing the job sends may fail.

HAProxy's configuration here is the one README "Running a fleet" shows.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import PSEUDONYMD, ROOT, new_api_key, new_keyring, stop_process
from pseudonym import Client

HAPROXY_CONFIG = ROOT / "tests" / "python" / "haproxy.cfg"
REPLICAS = 3


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def readiness(url: str) -> dict | None:
    """What `/readyz` of `url` answers, or None while it cannot answer ready."""
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=1) as answer:
            return json.loads(answer.read())
    except OSError:
        return None


def wait_until(condition, what: str, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class Fleet:
    """Replicas on fixed loopback ports (a restarted one comes back on its port), one keyring
    file and API key file they all read, an audit file each, and HAProxy in front."""

    def __init__(self, folder: Path) -> None:
        haproxy = shutil.which("haproxy")
        if haproxy is None:
            pytest.fail("haproxy is missing: scripts/test.sh installs it (apt-get install haproxy)")
        self.folder = folder
        keys = folder / "api-keys.toml"
        self.api_key = new_api_key(keys, "fleet-job", "pseudonymize,reidentify,rewrap", "*")
        self.keyring = new_keyring(folder / "keyring.toml")
        self.ports = [free_port() for _ in range(REPLICAS)]
        self.args = ["--keyring-file", str(self.keyring), "--api-keys-file", str(keys), "--log", "warn"]
        self.replicas: list[subprocess.Popen | None] = [None] * REPLICAS
        for index in range(REPLICAS):
            self.start(index)
        self.port = free_port()
        config = HAPROXY_CONFIG.read_text(encoding="utf-8").replace("127.0.0.1:8080", f"127.0.0.1:{self.port}")
        for index, port in enumerate(self.ports):
            config = config.replace(f"127.0.0.1:{8081 + index}", f"127.0.0.1:{port}")
        (folder / "haproxy.cfg").write_text(config, encoding="utf-8")
        self.haproxy = subprocess.Popen([haproxy, "-db", "-f", str(folder / "haproxy.cfg")],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{self.port}"
        wait_until(lambda: readiness(self.url) is not None, "HAProxy to serve")

    def replica_url(self, index: int) -> str:
        return f"http://127.0.0.1:{self.ports[index]}"

    def start(self, index: int) -> None:
        audit = self.folder / f"audit-{index}.jsonl"
        self.replicas[index] = subprocess.Popen(
            [str(PSEUDONYMD), "--listen", f"127.0.0.1:{self.ports[index]}", "--audit-log", str(audit), *self.args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={k: v for k, v in os.environ.items() if not k.startswith("PSEUDONYM_")},
        )
        wait_until(lambda: readiness(self.replica_url(index)) is not None, f"replica {index} to start")

    def signal(self, index: int, signum: int) -> None:
        process = self.replicas[index]
        assert process is not None
        process.send_signal(signum)

    def restart(self, index: int) -> None:
        """Drains replica `index` with SIGTERM, waits for it to end, starts it again."""
        self.signal(index, signal.SIGTERM)
        process = self.replicas[index]
        assert process is not None
        assert process.wait(timeout=30) == 0
        self.start(index)
        time.sleep(0.5)  # HAProxy's health check (every 200 ms) sees it up again

    def reload_each(self, check) -> None:  # type: ignore[no-untyped-def]
        """SIGHUP to each replica in turn, each time waiting until its `/readyz` fits `check`."""
        for index in range(REPLICAS):
            self.signal(index, signal.SIGHUP)
            wait_until(lambda: check(readiness(self.replica_url(index)) or {}), f"replica {index} to reload")

    def keygen(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(PSEUDONYMD), "keygen", "--keyring-file", str(self.keyring), *args],
                              capture_output=True, text=True, timeout=30)

    def audit_lines(self) -> list[dict]:
        lines = []
        for index in range(REPLICAS):
            path = self.folder / f"audit-{index}.jsonl"
            if path.exists():
                lines += [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
        return lines

    def stop(self) -> None:
        stop_process(self.haproxy)
        for process in self.replicas:
            if process is not None and process.poll() is None:
                stop_process(process)


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    running = Fleet(tmp_path)
    yield running
    running.stop()


@dataclass
class Job:
    """Pseudonymizes batches through the balancer, back to back, and re-identifies each
    answer, until stopped; counts what it did and every call that raised."""

    client: Client
    tokens: dict[str, str] = field(default_factory=dict)
    requests: int = 0
    values: int = 0
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        round_ = 0
        while not self._stop.is_set():
            values = [f"WVWZZZ1JZ{round_:04}{i:04}" for i in range(500)]
            try:
                tokens = self.client.pseudonymize("vin", values)
                back = self.client.reidentify("vin", tokens)
                if back != values:
                    self.failures.append(f"round {round_}: re-identified values differ")
                self.tokens.update(zip(tokens, values))
                self.requests += 2
                self.values += 2 * len(values)
            except Exception as error:  # every failure the job sees is counted, none hidden
                self.failures.append(f"round {round_}: {type(error).__name__}: {error}")
            round_ += 1

    def __enter__(self) -> Job:
        self._thread = threading.Thread(target=self.run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def report(self, name: str) -> str:
        return (f"{name}: {self.requests} requests, {self.values} values, {len(self.tokens)} distinct "
                f"tokens, {len(self.failures)} failures")


def test_rolling_restarts_and_a_key_rotation_under_load_lose_nothing(fleet: Fleet, spark) -> None:
    from pseudonym.spark import register

    client = Client(fleet.url, fleet.api_key, timeout=5, retries=10)
    register(spark, url=fleet.url, api_key=fleet.api_key, prefix="fleet_")
    stream = (
        spark.readStream.format("rate").option("rowsPerSecond", 500).option("numPartitions", 2).load()
        .selectExpr("CAST(value AS STRING) AS value", "fleet_pseudonymize(value, 'ids') AS token")
        .writeStream.format("memory").queryName("fleet_tokens").trigger(processingTime="300 milliseconds")
        .start()
    )
    streamed_rows = lambda: spark.table("fleet_tokens").count()  # noqa: E731
    wait_until(lambda: streamed_rows() > 0, "the stream's first micro-batch", timeout=120)
    with Job(client) as job:
        time.sleep(1)
        # (a) each replica in turn drained with SIGTERM and started again
        for index in range(REPLICAS):
            fleet.restart(index)
        # (b) a new key version staged, then loaded by each replica in turn
        assert fleet.keygen("--add", "--stage").returncode == 0
        fleet.signal(0, signal.SIGHUP)
        wait_until(lambda: 2 in (readiness(fleet.replica_url(0)) or {}).get("key_versions", []), "replica 0 to stage")
        urls = ",".join(fleet.replica_url(i) for i in range(REPLICAS))
        refused = fleet.keygen("--set-primary", "2", "--check-replicas", urls)
        assert refused.returncode != 0 and "does not hold key version 2" in refused.stderr, refused.stderr
        fleet.reload_each(lambda ready: 2 in ready.get("key_versions", []))
        # (c) made primary once every replica holds it, then loaded by each in turn
        promoted = fleet.keygen("--set-primary", "2", "--check-replicas", urls)
        assert promoted.returncode == 0, promoted.stderr
        fleet.reload_each(lambda ready: ready.get("primary_key_version") == 2)
        rotated = streamed_rows()
        wait_until(lambda: streamed_rows() > rotated, "a micro-batch under the new primary", timeout=60)
    stream.stop()
    assert stream.exception() is None
    print(job.report("job through the client"))
    assert job.failures == [] and job.requests > 0

    streamed = {row.token: row.value for row in spark.table("fleet_tokens").collect()}
    print(f"Spark streaming job: {len(streamed)} rows pseudonymized through the balancer")
    assert len(streamed) > 0
    made = {**job.tokens, **streamed}
    old = [token for token in made if token.startswith(("d1.", "r1.", "h1."))]
    assert old and any(token.startswith("d2.") for token in made)

    # Every token made during the run re-identifies on every replica.
    for index in range(REPLICAS):
        direct = Client(fleet.replica_url(index), fleet.api_key)
        for domain, group in (("vin", list(job.tokens)), ("ids", list(streamed))):
            assert direct.reidentify(domain, group) == [made[t] for t in group]

    # Old tokens are rewrapped through the balancer; then version 1 is retired everywhere.
    rewrapped = {}
    for domain, group in (("vin", [t for t in old if t in job.tokens]), ("ids", [t for t in old if t in streamed])):
        rewrapped.update(zip(group, client.rewrap(domain, group)))
    assert all(new.startswith("d2.") for new in rewrapped.values())
    retired = fleet.keygen("--retire", "1", "--check-replicas", urls)
    assert retired.returncode == 0, retired.stderr
    fleet.reload_each(lambda ready: ready.get("key_versions") == [2])
    for index in range(REPLICAS):
        direct = Client(fleet.replica_url(index), fleet.api_key)
        for domain, book in (("vin", job.tokens), ("ids", streamed)):
            group = [t for t in old if t in book]
            assert direct.reidentify(domain, [rewrapped[t] for t in group]) == [book[t] for t in group]

    rewraps = [line for line in fleet.audit_lines() if line["operation"] == "rewrap"]
    assert sum(line["count"] for line in rewraps) >= len(set(old))
    assert all(line["api_key"] == "fleet-job" and line["outcome"] == "ok" for line in rewraps)
    print(f"rewrapped {len(rewrapped)} tokens in {len(rewraps)} audited requests")


def test_a_replica_killed_mid_job_loses_nothing(fleet: Fleet) -> None:
    client = Client(fleet.url, fleet.api_key, timeout=5, retries=10)
    with Job(client) as job:
        time.sleep(1)
        fleet.signal(1, signal.SIGKILL)
        time.sleep(2)
        fleet.start(1)
        time.sleep(1)
    print(job.report("job with a replica killed"))
    assert job.failures == [] and job.requests > 0
