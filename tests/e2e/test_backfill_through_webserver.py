"""A 30-day backfill launched through the webserver's GraphQL API (what the UI calls), run by the daemon."""

from __future__ import annotations

import datetime as dt
import shutil
import signal
import time
from pathlib import Path

import pytest

from devtools.processes import START_TIMEOUT
from devtools.services import dagster_services
from tests.conftest import Platform

pytestmark = pytest.mark.slow

FIRST, LAST = dt.date(2013, 1, 10), dt.date(2013, 2, 8)
ASSETS = [["bronze", "flights"], ["bronze", "weather"], ["features", "flight_features"]]
DAEMON_OUTAGE_SECONDS = 3


def test_a_30_day_backfill_lands_exactly_those_days_once(tmp_path: Path, replayed_landing: Path) -> None:
    data = Platform(tmp_path / "data")
    shutil.copytree(replayed_landing, data.landing_dir)
    data.reference()
    with dagster_services(tmp_path) as services:
        backfill = services.launch_backfill(ASSETS, FIRST.isoformat(), LAST.isoformat())
        status = services.wait_for_backfill(backfill)
        runs = services.runs()
    assert status in ("COMPLETED", "COMPLETED_SUCCESS"), f"backfill ended {status}: {runs}"
    ours = [
        r for r in runs if any(t["key"] == "dagster/backfill" and t["value"] == backfill for t in r["tags"])
    ]
    assert ours and all(r["status"] == "SUCCESS" for r in ours)
    # Single-run backfill policies: one run per asset step range, not one per day.
    assert len(ours) <= 3

    days = [FIRST + dt.timedelta(days=i) for i in range(30)]
    for table, column in (
        ("bronze/flights", "flight_date"),
        ("bronze/weather", "obs_date"),
        ("features/flight_features", "flight_date"),
    ):
        frame = data.store.read(table)
        assert sorted(frame.get_column(column).unique().to_list()) == days, table
    flights = data.store.read("bronze/flights")
    key = ["flight_date", "carrier", "flight", "origin", "sched_dep_time"]
    assert not flights.select(key).is_duplicated().any()
    landing_rows = data.store.read("bronze/flights_landing_log")
    assert flights.height == landing_rows["landing_rows"].sum() - landing_rows["rejected"].sum()


def test_a_backfill_survives_the_daemon_killed_mid_run_without_writing_a_day_twice(
    tmp_path: Path, replayed_landing: Path
) -> None:
    data = Platform(tmp_path / "data")
    shutil.copytree(replayed_landing, data.landing_dir)
    data.reference()
    with dagster_services(tmp_path) as services:
        backfill = services.launch_backfill(ASSETS, FIRST.isoformat(), LAST.isoformat())
        services.poll(
            services.runs,
            lambda runs: any(r["status"] in ("STARTING", "STARTED", "SUCCESS") for r in runs),
            what=f"backfill {backfill} to launch a run",
            timeout=START_TIMEOUT,
            show=lambda runs: f"runs {[(r['runId'][:8], r['status']) for r in runs]}",
        )
        services.stop("daemon", signal.SIGKILL, group=False)
        # An outage, not a wait: the daemon stays down a moment before it comes back.
        time.sleep(DAEMON_OUTAGE_SECONDS)
        restarted = time.time()
        services.start("daemon")
        services.wait_for_daemon(since=restarted)
        status = services.wait_for_backfill(backfill)
        runs = services.runs()
    assert status in ("COMPLETED", "COMPLETED_SUCCESS"), f"backfill ended {status}: {runs}"
    days = [FIRST + dt.timedelta(days=i) for i in range(30)]
    for table, column in (("bronze/flights", "flight_date"), ("features/flight_features", "flight_date")):
        counts = data.store.read(table).group_by(column).len()
        assert sorted(counts.get_column(column).to_list()) == days, table
    flights = data.store.read("bronze/flights")
    key = ["flight_date", "carrier", "flight", "origin", "sched_dep_time"]
    assert not flights.select(key).is_duplicated().any()
    ours = [
        r for r in runs if any(t["key"] == "dagster/backfill" and t["value"] == backfill for t in r["tags"])
    ]
    assert [r for r in ours if r["status"] == "SUCCESS"], runs
