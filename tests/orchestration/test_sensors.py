"""The landing and retraining sensors on real landing files and lake tables, and the schedules."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from assets.partitions import RANGE_END, RANGE_START
from ml.ingest.replay import replay
from orchestration.definitions import build_definitions
from orchestration.retraining import retrain_sensor
from orchestration.schedules import daily_ingestion_schedule
from orchestration.sensors import landing_sensor
from resources import DvcResource, LakeResource, LandingWatch, RetrainPolicy
from tests.conftest import ASSETS, Platform, day

NEW_YORK = dt.timezone(dt.timedelta(hours=-5))


def tick(platform: Platform, cursor: str | None, settle: float = 0) -> dg.SensorResult:
    context = dg.build_sensor_context(
        cursor=cursor,
        resources={
            "landing": platform.resources["landing"],
            "landing_watch": LandingWatch(settle_seconds=settle),
        },
    )
    result = landing_sensor(context)
    assert isinstance(result, dg.SensorResult)
    return result


TOGETHER = "bronze/flights+bronze/weather+features/flight_features"
"""A range whose flights and weather landed together: both bronze tables and the features, one run."""


def spans(result: dg.SensorResult) -> list[tuple[str, str, str]]:
    return sorted(
        (
            "+".join(key.to_user_string() for key in r.asset_selection or []),
            r.tags[RANGE_START],
            r.tags[RANGE_END],
        )
        for r in result.run_requests or []
    )


def test_new_days_become_range_requests_once_and_a_changed_file_again(platform: Platform) -> None:
    first = tick(platform, None)
    # The replayed landing zone holds 2013-01-01..2013-02-15: two ranges (31 days max), each
    # with flights and weather, so each is one run of both bronze tables and the features.
    assert spans(first) == [
        (TOGETHER, "2013-01-01", "2013-01-31"),
        (TOGETHER, "2013-02-01", "2013-02-15"),
    ]
    again = tick(platform, first.cursor)
    assert again.run_requests == []

    path = platform.landing_dir / "flights" / f"{day(3)}.csv"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-1]))  # a corrected delivery with one row less
    changed = tick(platform, again.cursor)
    assert spans(changed) == [("bronze/flights", "2013-01-03", "2013-01-03")]
    assert changed.run_requests[0].run_key != first.run_requests[0].run_key  # type: ignore[index]


def test_a_file_being_copied_waits_and_a_badly_named_one_is_quarantined(platform: Platform) -> None:
    seen = tick(platform, None)
    replay(platform.landing_dir, dt.date(2013, 2, 16), dt.date(2013, 2, 16), datasets=("flights",))
    (platform.landing_dir / "flights" / "notes.csv").write_text("not a day\n")
    waiting = tick(platform, seen.cursor, settle=3600)
    assert waiting.run_requests == []
    assert not (platform.landing_dir / "flights" / "notes.csv").exists()
    assert (platform.quarantine_dir / "flights" / "notes.csv.reason.json").exists()
    settled = tick(platform, waiting.cursor, settle=0)
    assert spans(settled) == [("bronze/flights", "2013-02-16", "2013-02-16")]


def test_what_the_sensor_requests_runs_and_lands_exactly_those_days(platform: Platform) -> None:
    result = tick(platform, None)
    request = next(r for r in result.run_requests or [] if r.tags[RANGE_END] == "2013-02-15")
    run = dg.materialize(
        ASSETS, selection=request.asset_selection, tags=request.tags, resources=platform.resources
    )
    assert run.success
    expected = [dt.date(2013, 2, d) for d in range(1, 16)]
    for table, column in (
        ("bronze/flights", "flight_date"),
        ("bronze/weather", "obs_date"),
        ("features/flight_features", "flight_date"),
    ):
        assert platform.store.read(table).get_column(column).unique().sort().to_list() == expected, table


def test_a_range_only_one_dataset_landed_is_a_bronze_run_and_features_follow_by_automation(
    platform: Platform,
) -> None:
    seen = tick(platform, None)
    replay(platform.landing_dir, dt.date(2013, 2, 16), dt.date(2013, 2, 17), datasets=("flights",))
    replay(platform.landing_dir, dt.date(2013, 2, 16), dt.date(2013, 2, 16), datasets=("weather",))
    later = tick(platform, seen.cursor)
    assert spans(later) == [
        ("bronze/flights", "2013-02-16", "2013-02-17"),
        ("bronze/weather", "2013-02-16", "2013-02-16"),
    ]


def test_a_file_that_disappears_after_its_request_fails_clearly_and_is_reported(platform: Platform) -> None:
    result = tick(platform, None)
    request = next(r for r in result.run_requests or [] if r.tags[RANGE_END] == "2013-02-15")
    gone = platform.landing_dir / "flights" / "2013-02-10.csv"
    gone.unlink()
    run = dg.materialize(
        ASSETS,
        selection=request.asset_selection,
        tags=request.tags,
        resources=platform.resources,
        raise_on_error=False,
    )
    assert not run.success
    failure = next(e for e in run.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE)
    assert f"landing file {gone} does not exist" in str(failure.step_failure_data.error)
    landed = set(platform.store.read("bronze/flights")["flight_date"])
    first, last = (dt.date.fromisoformat(request.tags[k]) for k in (RANGE_START, RANGE_END))
    assert dt.date(2013, 2, 10) not in landed
    assert len(landed) == (last - first).days, "every other day of the range was written"
    later = tick(platform, result.cursor)
    assert later.run_requests == []
    assert str(gone) not in json.loads(later.cursor or "{}")["files"]  # forgotten: a new delivery is new


def test_a_year_of_new_files_is_one_quick_tick_of_a_few_runs(tmp_path: Path) -> None:
    replay(tmp_path / "landing", dt.date(2013, 1, 1), dt.date(2013, 12, 31))
    platform = Platform(tmp_path)
    start = time.perf_counter()
    result = tick(platform, None)
    elapsed = time.perf_counter() - start
    assert len(result.run_requests or []) == 12  # 365 days in ranges of at most 31, both datasets each
    assert elapsed < 30, f"a tick over 730 files took {elapsed:.1f}s; the sensor timeout is 60s"
    assert len(json.loads(result.cursor or "{}")["files"]) == 730


# --- retraining -------------------------------------------------------------------------------


def retrain_tick(
    platform: Platform, cursor: str | None = None, days: int = 7
) -> dg.SensorResult | dg.SkipReason:
    with dg.instance_for_test() as instance:  # no training run in it
        context = dg.build_sensor_context(
            cursor=cursor,
            instance=instance,
            resources={
                "lake": LakeResource(root=str(platform.root / "lake")),
                "dvc": DvcResource(repo_root=str(platform.root / "repo")),
                "retrain_policy": RetrainPolicy(new_feature_days=days),
            },
        )
        return retrain_sensor(context)


def test_retraining_follows_new_feature_days_and_drift_signals(platform: Platform) -> None:
    assert isinstance(retrain_tick(platform), dg.SkipReason)  # no features yet
    platform.bronze(day(1), day(10))
    platform.features(day(1), day(10))
    due = retrain_tick(platform)
    assert isinstance(due, dg.SensorResult)
    data = f"cutoff-2013-01-10:features-v{platform.store.version('features/flight_features')}"
    assert [r.run_key for r in due.run_requests or []] == [f"train:{data}"]
    assert due.run_requests[0].tags["platform/trigger"] == "new-days"  # type: ignore[index]

    manifest = platform.root / "repo" / "data" / "training_set" / "manifest.json"
    manifest.parent.mkdir(parents=True)
    manifest.write_text(json.dumps({"cutoff": "2013-01-08"}))
    assert isinstance(retrain_tick(platform), dg.SkipReason)  # 2 new days, 7 needed

    signals = pl.DataFrame(
        {
            "key": ["psi-2013-01-10"],
            "detail": ["psi 0.3 on dep_hour"],
            "raised_at": [dt.datetime(2013, 1, 10)],
        }
    )
    platform.store.overwrite("monitoring/drift_signals", signals, {})
    drift = retrain_tick(platform)
    assert isinstance(drift, dg.SensorResult)
    assert [r.run_key for r in drift.run_requests or []] == [f"train:{data}"]
    assert drift.run_requests[0].tags["platform/trigger"] == "drift"  # type: ignore[index]
    assert drift.run_requests[0].tags["platform/signals"] == "psi-2013-01-10"  # type: ignore[index]
    assert isinstance(retrain_tick(platform, drift.cursor), dg.SkipReason)  # handled once


# --- schedules --------------------------------------------------------------------------------


def test_daily_ingestion_runs_yesterdays_partition_in_new_york_time() -> None:
    schedule = build_definitions({"PLATFORM_DAILY_INGESTION_AT": "06:30"}).resolve_schedule_def(
        "daily_ingestion_schedule"
    )
    assert schedule.cron_schedule == "30 6 * * *"
    assert schedule.execution_timezone == "America/New_York"
    context = dg.build_schedule_context(
        scheduled_execution_time=dt.datetime(2013, 3, 2, 6, 30, tzinfo=NEW_YORK)
    )
    requests = schedule.evaluate_tick(context).run_requests or []
    assert [r.partition_key for r in requests] == ["2013-03-01"]
    with pytest.raises(ValueError, match="not HH:MM"):
        daily_ingestion_schedule("half past six")


def test_weekly_retraining_runs_on_mondays_in_new_york_time_unless_configured() -> None:
    default = build_definitions({}).resolve_schedule_def("weekly_retraining")
    assert default.cron_schedule == "0 5 * * 1"
    assert default.execution_timezone == "America/New_York"
    assert default.job_name == "train_evaluate_promote"
    configured = build_definitions({"PLATFORM_RETRAIN_CRON": "30 4 * * 0"}).resolve_schedule_def(
        "weekly_retraining"
    )
    assert configured.cron_schedule == "30 4 * * 0"
    with pytest.raises(dg.DagsterInvalidDefinitionError, match="cron"):
        build_definitions({"PLATFORM_RETRAIN_CRON": "every monday"})
