"""Freshness checks: a day that waits too long to reach bronze or the features fails its check."""

from __future__ import annotations

import datetime as dt
import os
import time

import dagster as dg

from assets.freshness import freshness
from ml.monitoring.freshness import FreshnessLimits, judge
from orchestration.freshness import freshness_job
from resources import FreshnessPolicy
from tests.conftest import ASSETS, Platform, day

NOW = dt.datetime(2026, 12, 1, 12, tzinfo=dt.UTC)


def test_a_day_is_stale_once_it_waited_longer_than_the_lag_and_old_data_only_with_max_age() -> None:
    limits = FreshnessLimits(dt.timedelta(minutes=10))
    arrived = {dt.date(2013, 1, 3): NOW - dt.timedelta(minutes=11), dt.date(2013, 1, 4): NOW}
    judged = judge(dt.date(2013, 1, 2), arrived, NOW, NOW.date(), limits)
    assert not judged.passed
    assert judged.stale == {dt.date(2013, 1, 3): 660.0}
    assert "2013-01-03 (660s)" in judged.explanation()
    assert judge(dt.date(2013, 1, 2), {}, NOW, NOW.date(), limits).passed, "a replay of 2013 is fresh"
    live = FreshnessLimits(dt.timedelta(minutes=10), max_age_days=2)
    assert not judge(dt.date(2026, 11, 28), {}, NOW, NOW.date(), live).passed
    assert judge(dt.date(2026, 11, 29), {}, NOW, NOW.date(), live).passed


def check_results(
    platform: Platform, instance: dg.DagsterInstance, lag_seconds: float
) -> dict[str, dg.AssetCheckEvaluation]:
    defs = dg.Definitions(
        assets=ASSETS,
        asset_checks=[freshness],
        jobs=[freshness_job],
        resources={**platform.resources, "freshness_policy": FreshnessPolicy(lag_seconds=lag_seconds)},
    )
    result = defs.resolve_job_def("freshness_checks").execute_in_process(instance=instance)
    assert result.success, "a failed freshness check alerts; it does not fail the run"
    return {
        e.event_specific_data.asset_key.to_user_string(): e.event_specific_data
        for e in result.all_events
        if e.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION
    }


def test_a_landing_file_waiting_for_bronze_and_a_bronze_day_waiting_for_features_fail_their_checks(
    platform: Platform,
) -> None:
    instance = dg.DagsterInstance.ephemeral()
    assert platform.bronze(day(1), day(2), instance=instance).success
    assert platform.features(day(1), day(1), instance=instance).success
    for dataset in ("flights", "weather"):
        for path in (platform.landing_dir / dataset).iterdir():
            if path.stem > day(3).isoformat():
                path.unlink()
    hour_ago = time.time() - 3600
    os.utime(platform.landing_dir / "flights" / f"{day(3).isoformat()}.csv", (hour_ago, hour_ago))

    checks = check_results(platform, instance, lag_seconds=600)
    flights = checks["bronze/flights"]
    assert not flights.passed and flights.severity == dg.AssetCheckSeverity.ERROR
    assert list(flights.metadata["stale"].value) == [day(3).isoformat()]
    assert checks["bronze/weather"].passed, "weather of day 3 landed just now: on its way, not stale"
    assert checks["features/flight_features"].passed, "day 2 reached bronze seconds ago"
    assert checks["features/flight_features"].metadata["waiting_days"].value == 1

    time.sleep(1.5)
    checks = check_results(platform, instance, lag_seconds=1)
    assert list(checks["features/flight_features"].metadata["stale"].value) == [day(2).isoformat()]
    assert platform.features(day(2), day(2), instance=instance).success
    assert check_results(platform, instance, lag_seconds=1)["features/flight_features"].passed
