"""Partitions from configuration: the demo's 2013 by default, a configured span, or open-ended
up to yesterday in New York, with the schedule and the landing sensor following them."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import zoneinfo
from pathlib import Path

import dagster as dg
import pytest

from assets.partitions import daily_partitions_for
from ml.partition_span import PartitionSpan, partition_span
from ml.settings import SettingsError
from tests.conftest import PROJECT

NY = zoneinfo.ZoneInfo("America/New_York")
TOGETHER = "bronze/flights+bronze/weather+features/flight_features"


def test_default_is_the_demo_year_and_a_first_day_alone_is_open_ended() -> None:
    assert partition_span({}) == PartitionSpan(dt.date(2013, 1, 1), dt.date(2013, 12, 31))
    assert partition_span({"PLATFORM_FIRST_DAY": "2026-01-01"}) == PartitionSpan(dt.date(2026, 1, 1), None)
    assert partition_span({"PLATFORM_LAST_DAY": "open"}) == PartitionSpan(dt.date(2013, 1, 1), None)
    bounded = partition_span({"PLATFORM_FIRST_DAY": "2026-01-01", "PLATFORM_LAST_DAY": "2026-06-30"})
    assert bounded == PartitionSpan(dt.date(2026, 1, 1), dt.date(2026, 6, 30))


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"PLATFORM_FIRST_DAY": "2026-13-01"}, "PLATFORM_FIRST_DAY"),
        ({"PLATFORM_LAST_DAY": "yesterday"}, "PLATFORM_LAST_DAY"),
        ({"PLATFORM_FIRST_DAY": "2026-02-01", "PLATFORM_LAST_DAY": "2026-01-31"}, "PLATFORM_LAST_DAY"),
    ],
)
def test_a_bad_span_is_refused_naming_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        partition_span(env)


def last_key(partitions: dg.PartitionsDefinition, at: dt.datetime) -> str | None:
    with dg.partition_loading_context(effective_dt=at):
        return partitions.get_last_partition_key()


def test_open_ended_partitions_end_yesterday_in_new_york() -> None:
    partitions = daily_partitions_for(PartitionSpan(dt.date(2026, 1, 1), None))
    # 2026-12-01 02:00 UTC is still 2026-11-30 in New York: its last partition is 2026-11-29.
    late_evening = dt.datetime(2026, 12, 1, 2, 0, tzinfo=dt.UTC)
    assert last_key(partitions, late_evening) == "2026-11-29"
    morning = dt.datetime(2026, 12, 1, 6, 30, tzinfo=NY)
    assert last_key(partitions, morning) == "2026-11-30"
    assert partitions.get_first_partition_key() == "2026-01-01"
    span = PartitionSpan(dt.date(2026, 1, 1), None)
    assert span.last_day(morning) == dt.date(2026, 11, 30)
    assert span.accepts_until(morning) == dt.date(2026, 12, 1)


def probe(env: dict[str, str], *args: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PLATFORM_")}
    done = subprocess.run(
        [sys.executable, "-m", "tests.orchestration.span_probe", *args],
        cwd=PROJECT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_daily_schedule_on_open_ended_partitions_requests_yesterday() -> None:
    at = dt.datetime(2026, 12, 1, 6, 30, tzinfo=NY)
    out = probe({"PLATFORM_FIRST_DAY": "2026-01-01"}, "schedule", at.isoformat())
    assert out["open_ended"] is True
    assert out["last_partition"] == "2026-11-30"
    assert out["requested"] == ["2026-11-30"]
    # A year later the same schedule asks for the new yesterday, with no change of code.
    later = dt.datetime(2027, 3, 15, 6, 30, tzinfo=NY)
    assert probe({"PLATFORM_FIRST_DAY": "2026-01-01"}, "schedule", later.isoformat())["requested"] == [
        "2027-03-14"
    ]


def _deliver(landing: Path, *days: str) -> None:
    for dataset in ("flights", "weather"):
        (landing / dataset).mkdir(parents=True, exist_ok=True)
        for day in days:
            (landing / dataset / f"{day}.csv").write_text("year,month,day\n")


def _reasons(quarantine: Path) -> dict[str, str]:
    return {
        p.name.removesuffix(".reason.json"): json.loads(p.read_text())["reason"]
        for p in quarantine.rglob("*.reason.json")
        if p.parent.name == "flights"
    }


def test_a_day_past_the_configured_last_day_is_quarantined_with_its_reason(tmp_path: Path) -> None:
    landing, quarantine = tmp_path / "landing", tmp_path / "quarantine"
    _deliver(landing, "2026-06-29", "2026-06-30", "2026-07-01")
    env = {"PLATFORM_FIRST_DAY": "2026-01-01", "PLATFORM_LAST_DAY": "2026-06-30"}
    out = probe(env, "sensor", str(landing), str(quarantine))
    assert out["requests"] == [[TOGETHER, "2026-06-29", "2026-06-30"]]
    reasons = _reasons(quarantine)
    assert set(reasons) == {"2026-07-01.csv"}
    assert "outside the partition range 2026-01-01..2026-06-30" in reasons["2026-07-01.csv"]
    assert not (landing / "flights" / "2026-07-01.csv").exists()
    assert (quarantine / "flights" / "2026-07-01.csv").exists()  # kept, not deleted


def test_open_ended_landing_requests_yesterday_holds_today_and_refuses_the_future(tmp_path: Path) -> None:
    """On the real clock: yesterday is ingested, today waits for its partition, tomorrow is refused.

    (Run within a second of New York midnight the days could straddle it; the days are
    computed right before the sensor runs, and its tick takes well under a second.)"""
    landing, quarantine = tmp_path / "landing", tmp_path / "quarantine"
    today = dt.datetime.now(NY).date()
    yesterday, tomorrow = today - dt.timedelta(days=1), today + dt.timedelta(days=1)
    first = today - dt.timedelta(days=30)
    before = first - dt.timedelta(days=1)
    _deliver(landing, *(d.isoformat() for d in (before, yesterday, today, tomorrow)))
    out = probe({"PLATFORM_FIRST_DAY": first.isoformat()}, "sensor", str(landing), str(quarantine))
    assert out["requests"] == [[TOGETHER, str(yesterday), str(yesterday)]]
    reasons = _reasons(quarantine)
    assert set(reasons) == {f"{before}.csv", f"{tomorrow}.csv"}
    assert "in the future" in reasons[f"{tomorrow}.csv"] and str(today) in reasons[f"{tomorrow}.csv"]
    assert "outside the partition range" in reasons[f"{before}.csv"]
    # Today's file waits in the landing zone for its partition (midnight in New York).
    assert (landing / "flights" / f"{today}.csv").exists()
