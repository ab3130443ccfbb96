"""2013 replayed into 2026 runs end to end on open-ended partitions, and its features are the
2013 features moved by the shift: nothing in the chain depends on the calendar year but the
calendar itself (holidays), so a point-in-time error or a date mixed up would show here."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys

import polars as pl
import pytest

from tests.conftest import PROJECT, Platform, day

pytestmark = pytest.mark.slow

SHIFT = 4746  # 678 weeks: 2013-01-01 is delivered as 2025-12-30, weekdays kept
FIRST, LAST = dt.date(2026, 1, 1), dt.date(2026, 1, 14)
SHIFTED = ("flight_date", "sched_dep_utc", "weather_time")
CALENDAR = ("days_to_holiday", "days_since_holiday")
"""2026-01-01 is New Year's Day, its source 2013-01-03 is not: the distance to holidays differs."""


@pytest.fixture(scope="module")
def shifted(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, pl.DataFrame]:
    root = tmp_path_factory.mktemp("shifted")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLATFORM_")}
    done = subprocess.run(
        [sys.executable, "-m", "tests.e2e.shifted_platform", str(root), str(FIRST), str(LAST), str(SHIFT)],
        cwd=PROJECT,
        env={**env, "PLATFORM_FIRST_DAY": str(FIRST)},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), pl.read_parquet(root / "features.parquet")


def test_a_shifted_replay_ingests_builds_features_and_trains_on_open_ended_partitions(
    shifted: tuple[dict, pl.DataFrame],
) -> None:
    out, _ = shifted
    assert out["span"] == [str(FIRST), "None"]  # open-ended: no last day configured
    assert out["first_partition"] == str(FIRST)
    assert out["bronze_success"] and out["features_success"] and out["chain_success"]
    assert out["bronze_days"] == [str(FIRST), str(LAST), 14]
    champion = out["champion"]
    assert champion is not None and champion["version"] == 1
    assert champion["training_window"] == [str(FIRST), str(LAST)]
    assert 0.5 < champion["metrics"]["roc_auc"] <= 1.0


def test_the_shifted_features_are_the_2013_features_moved_by_the_shift(
    shifted: tuple[dict, pl.DataFrame], platform: Platform
) -> None:
    _, moved = shifted
    source_first = FIRST - dt.timedelta(days=SHIFT)
    assert source_first == day(3)
    # The same inputs in 2013 (the shifted run's partitions start at its first day, so the two
    # replayed days before it were not ingested there either), and two days after the last:
    # a feature that read the future would differ.
    platform.bronze(day(3), day(18))
    platform.features(day(3), day(16))
    original = platform.store.read("features/flight_features")
    assert moved.height == original.height > 10_000
    key = ["flight_date", "carrier", "flight", "origin", "sched_dep_time"]
    shift = pl.duration(days=SHIFT)
    back = moved.with_columns(pl.col("flight_date") - shift).sort(key)
    original = original.sort(key)
    for column in ("sched_dep_utc", "weather_time"):
        assert (back[column] - original[column]).drop_nulls().unique().to_list() == [dt.timedelta(days=SHIFT)]
    same = [c for c in original.columns if c not in (*SHIFTED, *CALENDAR)]
    differ = [c for c in same if not back[c].equals(original[c])]
    assert not differ, f"features that depend on the year: {differ}"
