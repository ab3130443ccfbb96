"""The landing sensor under a real daemon: its cursor survives a restart, new files still come through."""

from __future__ import annotations

import datetime as dt
import signal
import time
from pathlib import Path

import pytest

from devtools.services import DagsterServices, dagster_services
from ml.ingest.replay import replay
from orchestration.partitions import RANGE_END, RANGE_START
from tests.conftest import Platform

pytestmark = pytest.mark.slow


def landing_runs(services: DagsterServices) -> list[dict]:
    return [r for r in services.runs() if any(t["value"] == "landing" for t in r["tags"])]


def wait_for_runs(services: DagsterServices, count: int, timeout: float = 120) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = landing_runs(services)
        if len(runs) >= count:
            return runs
        time.sleep(1)
    raise TimeoutError(f"{len(landing_runs(services))} landing run(s) after {timeout}s, expected {count}")


def test_the_sensor_cursor_survives_a_daemon_restart(tmp_path: Path) -> None:
    data = Platform(tmp_path / "data")
    replay(data.landing_dir, dt.date(2013, 1, 1), dt.date(2013, 1, 2))
    data.reference()
    with dagster_services(tmp_path, {"PLATFORM_LANDING_SETTLE_SECONDS": "0"}) as services:
        services.start_sensor("landing_sensor")
        first = wait_for_runs(services, 2)
        assert len(first) == 2  # flights and weather, 2013-01-01..2013-01-02 each

        services.stop("daemon", signal.SIGKILL, group=False)
        services.start("daemon")
        time.sleep(40)  # two sensor intervals after the restart
        assert len(landing_runs(services)) == 2, "files already requested were requested again"

        replay(data.landing_dir, dt.date(2013, 1, 3), dt.date(2013, 1, 3), datasets=("flights",))
        runs = wait_for_runs(services, 3)
    assert len(runs) == 3
    newest = {t["key"]: t["value"] for t in runs[0]["tags"]}
    assert newest[RANGE_START] == newest[RANGE_END] == "2013-01-03"
