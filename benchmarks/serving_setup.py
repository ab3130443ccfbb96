"""What the serving benchmarks stand on: a lake with a champion and an online snapshot, and a live server.

The platform is built with the project's own code, as in production but smaller: the
replay tool, the bronze, features and online-snapshot assets, a training-set snapshot of
the feature table, `ml.training.train` with the network of `params.yaml` (fewer epochs: the size
of the network, not its quality, sets the cost of a request) and the registry. A second
version with a copy of the champion's files is registered, so reloads can alternate
between two versions. The server is the real entrypoint, `python -m serving`, in its
own process on 127.0.0.1, configured by environment variables as it is deployed.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from benchmarks.common import Lake, replay_landing
from devtools.processes import free_port, terminate
from ml.lake.delta import DeltaStore
from ml.registry.model_registry import ModelRegistry
from ml.registry.provenance import params_hash
from ml.training.progress import ConsoleReporter
from ml.training.train import run as train
from ml.training.training_set import SplitSizes, folder_md5, snapshot_from_lake

TOKEN = "bench-client-token"
ADMIN_TOKEN = "bench-admin-token"
FIRST_DAY = dt.date(2013, 1, 1)
PROJECT = Path(__file__).resolve().parents[1]
SPLITS = SplitSizes(validation_days=3, test_days=3)
MAX_EPOCHS = 2


@dataclass
class ServingPlatform:
    """A lake under `root` whose registry holds a champion (`champion`) and a copy of it (`other`)."""

    root: Path
    last_day: dt.date
    champion: int
    other: int

    @property
    def lake_uri(self) -> str:
        return str(self.root / "lake")

    @property
    def registry(self) -> ModelRegistry:
        return ModelRegistry(DeltaStore(self.lake_uri))

    def flight(self, hour: int = 8, minute: int = 30) -> dict[str, Any]:
        """A request's flight on the snapshot's last day, written as a client would."""
        departure = dt.datetime.combine(
            self.last_day, dt.time(hour, minute), tzinfo=dt.timezone(dt.timedelta(hours=-5))
        )
        return {
            "carrier": "UA",
            "origin": "EWR",
            "dest": "ORD",
            "scheduled_departure": departure.isoformat(),
            "tailnum": "N14228",
            "distance": 719,
        }

    def body(self, flights: int = 1) -> bytes:
        """A predict body of `flights` flights, spread over the day so their features differ."""
        return json.dumps(
            {"flights": [self.flight(6 + i % 16, (7 * i) % 60) for i in range(flights)]}
        ).encode()


def build_platform(root: Path, days: int) -> ServingPlatform:
    """Replay, ingest and featurize `days` days of 2013, publish the snapshot, train and promote."""
    last = FIRST_DAY + dt.timedelta(days=days - 1)
    landing = replay_landing(root / "landing", FIRST_DAY, last)
    lake = Lake(root, landing)
    lake.reference()
    lake.materialize(("bronze/flights", "bronze/weather"), FIRST_DAY, last)
    lake.materialize(("features/flight_features",), FIRST_DAY, last)
    lake.materialize(("features/online_snapshot",))
    store = lake.store
    training_set = root / "training_set"
    manifest = snapshot_from_lake(store, training_set, None, SPLITS)
    params = yaml.safe_load((PROJECT / "params.yaml").read_text())
    params["train"]["max_epochs"] = min(params["train"]["max_epochs"], MAX_EPOCHS)
    params_file = root / "params.yaml"
    params_file.write_text(yaml.safe_dump(params))
    model_dir = root / "models" / "champion"
    metrics = train(training_set, model_dir, params_file, "cpu", ConsoleReporter())
    registry = ModelRegistry(store)
    source: dict[str, Any] = manifest["source"]  # type: ignore[assignment]
    versions = []
    for folder in (model_dir, root / "models" / "copy"):
        if not folder.exists():
            shutil.copytree(model_dir, folder)
        versions.append(
            registry.register(
                artifact_uri=str(folder),
                onnx_uri=str(folder / "model.onnx"),
                model_md5=f"{folder.name}-{folder_md5(model_dir)}",
                training_set_md5=folder_md5(training_set),
                feature_table_uri=str(source["feature_table"]),
                feature_table_version=int(source["feature_table_version"]),
                lake_versions={},
                git_commit="benchmark",
                params={**params["train"], "hash": params_hash(params["train"])},
                metrics={"training": metrics},
                now=dt.datetime.now(dt.UTC),
            )
        )
        if len(versions) == 1:  # promoted before the next registration would supersede it
            registry.promote(versions[0], "serving benchmark", now=dt.datetime.now(dt.UTC))
    return ServingPlatform(root=root, last_day=last, champion=versions[0], other=versions[1])


@dataclass
class Server:
    """A running `python -m serving`: where it listens (the API, /metrics) and its log file."""

    port: int
    process: subprocess.Popen[bytes]
    log: Path
    metrics_port: int

    def connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def metrics(self) -> dict[str, float]:
        """The server's /metrics samples, by name with labels (`name{label="value"}`), summed if repeated."""
        connection = http.client.HTTPConnection("127.0.0.1", self.metrics_port, timeout=10)
        try:
            connection.request("GET", "/metrics")
            text = connection.getresponse().read().decode()
        finally:
            connection.close()
        samples: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                samples[name] = samples.get(name, 0.0) + float(value)
        return samples

    def peak_rss(self) -> int:
        """The process's peak resident set (VmHWM) in bytes, while it runs; 0 once it has exited."""
        try:
            status = Path(f"/proc/{self.process.pid}/status").read_text()
        except OSError:
            return 0
        line = next((line for line in status.splitlines() if line.startswith("VmHWM:")), "VmHWM: 0 kB")
        return int(line.split()[1]) * 1024


def headers(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


@contextmanager
def server(platform: ServingPlatform, log: Path, **settings: str) -> Iterator[Server]:
    """`python -m serving` on a free port of 127.0.0.1, ready (`/readyz` answers 200) when yielded."""
    port, metrics_port = free_port(), free_port()
    env = {
        **os.environ,
        "PLATFORM_LAKE_URI": platform.lake_uri,
        "PLATFORM_ARTIFACTS_URI": str(platform.root / "models"),
        "PLATFORM_SERVING_TOKEN": TOKEN,
        "PLATFORM_SERVING_ADMIN_TOKEN": ADMIN_TOKEN,
        "PLATFORM_SERVING_HOST": "127.0.0.1",
        "PLATFORM_SERVING_PORT": str(port),
        "PLATFORM_SERVING_METRICS_PORT": str(metrics_port),
        "PLATFORM_SERVING_POLL_SECONDS": "0",
        "PLATFORM_SERVING_CACHE_DIR": str(platform.root / "serving-cache"),
        **{f"PLATFORM_SERVING_{k.upper()}": v for k, v in settings.items()},
    }
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "serving"], cwd=PROJECT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    running = Server(port, process, log, metrics_port)
    try:
        _wait_ready(running)
        yield running
    finally:
        terminate(process, timeout=15)


def _wait_ready(running: Server, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if running.process.poll() is not None:
            raise RuntimeError(
                f"the server exited with {running.process.returncode}:\n{running.log.read_text()}"
            )
        try:
            connection = running.connection()
            connection.request("GET", "/readyz")
            if connection.getresponse().status == 200:
                connection.close()
                return
            connection.close()
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the server was not ready within {timeout} s:\n{running.log.read_text()}")


def post(
    connection: http.client.HTTPConnection, path: str, body: bytes, token: str = TOKEN
) -> tuple[int, bytes]:
    """One request on a kept-alive connection; the status and the whole answer."""
    connection.request("POST", path, body=body, headers=headers(token))
    answer = connection.getresponse()
    return answer.status, answer.read()
