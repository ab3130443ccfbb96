"""The landing sensor under a real daemon: its cursor survives a restart, new files still come through."""

from __future__ import annotations

import datetime as dt
import signal
import time
from pathlib import Path

import pytest

from assets.partitions import RANGE_END, RANGE_START
from devtools.processes import START_TIMEOUT
from devtools.services import DagsterServices, dagster_services
from ml.ingest.replay import replay
from tests.conftest import Platform

pytestmark = pytest.mark.slow

SENSOR = "landing_sensor"


def landing_runs(services: DagsterServices) -> list[dict]:
    return [r for r in services.runs() if any(t["value"] == "landing" for t in r["tags"])]


def wait_for_runs(services: DagsterServices, count: int, timeout: float = START_TIMEOUT) -> list[dict]:
    return services.poll(
        lambda: landing_runs(services),
        lambda runs: len(runs) >= count,
        what=f"{count} landing run(s)",
        timeout=timeout,
        interval=1,
        show=lambda runs: f"{len(runs)} landing run(s): {runs}",
    )


def wait_for_evaluated_ticks(services: DagsterServices, count: int, after: float) -> None:
    """Until `count` ticks of the sensor begun after `after` have been evaluated (their runs created)."""
    services.poll(
        lambda: services.sensor_ticks(SENSOR, after),
        lambda ticks: sum(t["status"] != "STARTED" for t in ticks) >= count,
        what=f"{count} evaluated ticks of {SENSOR} after {after:.0f}",
        # A sensor interval (5 s) or so a tick once the daemon runs: minutes are plenty.
        timeout=START_TIMEOUT,
        interval=1,
    )


def test_the_sensor_cursor_survives_a_daemon_restart(tmp_path: Path) -> None:
    data = Platform(tmp_path / "data")
    replay(data.landing_dir, dt.date(2013, 1, 1), dt.date(2013, 1, 2))
    data.reference()
    with dagster_services(tmp_path, {"PLATFORM_LANDING_SETTLE_SECONDS": "0"}) as services:
        services.start_sensor(SENSOR)
        first = wait_for_runs(services, 1)
        assert len(first) == 1  # flights, weather and features of 2013-01-01..2013-01-02, one run

        services.stop("daemon", signal.SIGKILL, group=False)
        restarted = time.time()
        services.start("daemon")
        services.wait_for_daemon(since=restarted)
        # Two ticks of the restarted daemon: either would have requested the files again.
        wait_for_evaluated_ticks(services, 2, after=restarted)
        assert len(landing_runs(services)) == 1, "files already requested were requested again"

        replay(data.landing_dir, dt.date(2013, 1, 3), dt.date(2013, 1, 3), datasets=("flights",))
        runs = wait_for_runs(services, 2)
    assert len(runs) == 2
    newest = {t["key"]: t["value"] for t in runs[0]["tags"]}
    assert newest[RANGE_START] == newest[RANGE_END] == "2013-01-03"
