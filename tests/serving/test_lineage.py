"""A prediction answered by the real server process, traced by `python -m ml.lineage` to its landing files.

The walk must reach the md5 of the landing file of every day of the model's training
window, for flights and weather, each checked against the file's bytes; a file changed
after ingestion breaks the chain, and the command names it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from ml.lineage.ledger import training_window
from ml.training.training_set import read_manifest
from tests.conftest import ADMIN_TOKEN, PROJECT, TOKEN, Served, bearer
from tests.serving.test_api import flight
from tests.serving.test_prediction_log import free_port

LANDING_LINE = re.compile(r"^ok {3}(bronze/\w+) (\d{4}-\d\d-\d\d) (\S+) md5 ([0-9a-f]{32}) (\d+) rows$")


def _answer_through_the_server(served: Served, tmp_path: Path) -> str:
    """One request to `python -m serving`, stopped by SIGTERM so its prediction log is written."""
    port = free_port()
    root = served.platform.root
    env = {
        **os.environ,
        "PLATFORM_DATA_DIR": str(root),
        "PLATFORM_SERVING_TOKEN": TOKEN,
        "PLATFORM_SERVING_ADMIN_TOKEN": ADMIN_TOKEN,
        "PLATFORM_SERVING_PORT": str(port),
        "PLATFORM_SERVING_METRICS_PORT": str(free_port()),
        "PLATFORM_SERVING_POLL_SECONDS": "0",
        "PLATFORM_SERVING_CACHE_DIR": str(tmp_path / "cache"),
    }
    server = subprocess.Popen([sys.executable, "-m", "serving"], cwd=PROJECT, env=env, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    request_id = f"lineage-{uuid.uuid4().hex}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, server.stderr.read() if server.stderr else ""
            try:
                with urllib.request.urlopen(f"{base}/readyz", timeout=1) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                assert time.monotonic() < deadline, "the server did not become ready"
                time.sleep(0.1)
        request = urllib.request.Request(
            f"{base}/v1/predict",
            data=json.dumps({"flights": [flight()]}).encode(),
            headers={"Content-Type": "application/json", "X-Request-ID": request_id, **bearer()},
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 200
        server.send_signal(signal.SIGTERM)
        server.wait(30)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    return request_id


def _lineage(served: Served, *arguments: str) -> subprocess.CompletedProcess[str]:
    root = served.platform.root
    command = [sys.executable, "-m", "ml.lineage", *arguments, "--repo", str(served.platform.repo)]
    env = {**os.environ, "PLATFORM_DATA_DIR": str(root)}
    return subprocess.run(command, cwd=PROJECT, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture
def request_id(served: Served, tmp_path: Path) -> str:
    return _answer_through_the_server(served, tmp_path)


def test_a_served_prediction_traces_to_the_landing_file_of_every_day_of_its_training_window(
    served: Served, request_id: str
) -> None:
    done = _lineage(served, "--request-id", request_id)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"prediction: request {request_id}: 1 flight(s) answered by model v{served.champion.version}" in (
        done.stdout
    )
    assert "online snapshot" in done.stdout and "features/flight_features v" in done.stdout
    for link in ("source tree: git ", "training set: ", "model files: ", "features: "):
        assert f"ok   {link}" in done.stdout, link
    found = {
        (m[1], dt.date.fromisoformat(m[2])): (m[3], m[4], int(m[5]))
        for line in done.stdout.splitlines()
        if (m := LANDING_LINE.match(line))
    }
    window = training_window(read_manifest(served.platform.repo / "data" / "training_set"))
    landing = served.platform.landing_dir
    for table, dataset in (("bronze/flights", "flights"), ("bronze/weather", "weather")):
        for day in window:
            name, md5, rows = found[(table, day)]
            data = (landing / dataset / f"{day.isoformat()}.csv").read_bytes()
            assert (name, md5) == (f"{dataset}/{day.isoformat()}.csv", hashlib.md5(data).hexdigest())
            assert rows == len(data.decode().splitlines()) - 1
    assert f"{len(found)} landing files" in done.stdout and len(found) == 2 * len(window)


def test_a_landing_file_changed_after_ingestion_breaks_the_chain_and_is_named(
    served: Served, request_id: str
) -> None:
    window = training_window(read_manifest(served.platform.repo / "data" / "training_set"))
    tampered = served.platform.landing_dir / "weather" / f"{window[2].isoformat()}.csv"
    original = tampered.read_bytes()
    try:
        tampered.write_bytes(original.replace(b",", b";", 1))
        done = _lineage(served, "--request-id", request_id)
    finally:
        tampered.write_bytes(original)
    assert done.returncode == 1, done.stdout + done.stderr
    broken = [line for line in done.stderr.splitlines() if line.startswith("- ")]
    assert len(broken) == 1, done.stderr
    assert f"bronze/weather {window[2]} landing file weather/{window[2].isoformat()}.csv" in broken[0]
    assert "the file changed after ingestion" in broken[0]
    assert _lineage(served, "--version", str(served.champion.version)).returncode == 0
