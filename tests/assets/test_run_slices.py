"""A run works through its days in slices under the memory budget: the tables end as one slice leaves them.

The plan is shrunk to slices of three days (`assets.partitions.RUN_MEMORY`), so a ten-day
range run of the real bronze and features assets is four slices, each in its own commits;
the same run with the default plan is one slice. Both lakes must hold the same rows, the
checks must judge the whole run, and a bad file in one slice must cost only its own day.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

import assets.partitions
from ml.ingest.run_memory import BASE_BYTES, BYTES_PER_RANGE_ROW, BYTES_PER_WINDOW_ROW, RunMemory
from tests.assets.test_ingestion_bad_input import dep_time_abc
from tests.conftest import Platform, day, failures, landing_file, uri

SLICE = 3
FLIGHTS_PER_DAY = 1_000
TABLES = {
    "bronze/flights": ("flight_date", "carrier", "flight", "origin", "sched_dep_time"),
    "bronze/weather": ("origin", "time_hour"),
    "bronze/flights_landing_log": ("day",),
    "features/flight_features": ("flight_date", "carrier", "flight", "origin", "sched_dep_utc"),
}


def three_day_slices() -> RunMemory:
    window = FLIGHTS_PER_DAY * 28 * BYTES_PER_WINDOW_ROW
    budget = BASE_BYTES + window + FLIGHTS_PER_DAY * SLICE * BYTES_PER_RANGE_ROW
    return RunMemory(budget, FLIGHTS_PER_DAY, window_days=28)


@pytest.fixture
def sliced(monkeypatch: pytest.MonkeyPatch) -> RunMemory:
    plan = three_day_slices()
    assert plan.days_per_slice() == SLICE
    monkeypatch.setattr(assets.partitions, "RUN_MEMORY", plan)
    return plan


def materialized_metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict[str, object]:
    [event] = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == asset][
        :1
    ]
    return {k: v.value for k, v in event.materialization.metadata.items()}


def test_a_run_in_slices_stores_what_a_run_in_one_slice_stores(
    platform: Platform, replayed_landing: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = Platform(tmp_path / "whole")
    shutil.copytree(replayed_landing, whole.landing_dir)
    whole.reference()
    assert whole.bronze(day(1), day(10)).success
    whole_features = whole.features(day(1), day(10))

    monkeypatch.setattr(assets.partitions, "RUN_MEMORY", three_day_slices())
    bronze = platform.bronze(day(1), day(10))
    features = platform.features(day(1), day(10))
    assert bronze.success and features.success

    for table, key in TABLES.items():
        got, want = platform.store.read(table).sort(key), whole.store.read(table).sort(key)
        ignored = [c for c in ("source_file", "ingested_at") if c in want.columns]
        assert got.drop(ignored).equals(want.drop(ignored)), table
    # Four slices (3 + 3 + 3 + 1 days), each its own commit of the table.
    for table in ("bronze/flights", "bronze/flights_landing_log", "features/flight_features"):
        assert platform.store.version(table) == whole.store.version(table) + 3, table
    for asset in ("bronze/flights", "features/flight_features"):
        meta = materialized_metadata(bronze if asset.startswith("bronze") else features, asset)
        assert meta["slices"] == 4, asset
        assert meta["dagster/row_count"] == whole.store.read(asset).height, asset
    flights = materialized_metadata(bronze, "bronze/flights")
    assert flights["landing_rows"] == sum(whole.store.read("bronze/flights_landing_log")["landing_rows"])
    # The checks judged the whole run from its slices: as the one-slice run judged it.
    got, want = check_results(features), check_results(whole_features)
    assert {n: c.passed for n, c in got.items()} == {n: c.passed for n, c in want.items()}
    assert len(got) == 5
    for name in ("label_rate", "null_rates"):
        mine, theirs = got[name].metadata, want[name].metadata
        assert mine["per_day" if name == "label_rate" else "rates"].value == pytest.approx(
            theirs["per_day" if name == "label_rate" else "rates"].value
        ), name
    assert got["key_unique"].metadata["duplicates"].value == 0


def check_results(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    asset = dg.AssetKey.from_user_string("features/flight_features")
    return {
        c.check_name: c
        for c in result.get_asset_check_evaluations()
        if c.asset_key == asset and c.check_name != "registered_versions_recoverable"
    }


def test_a_bad_file_in_one_slice_costs_its_day_and_the_other_slices_are_written(
    platform: Platform, sliced: RunMemory
) -> None:
    path = landing_file(platform, 5)  # the second slice: days 4..6
    path.write_bytes(dep_time_abc(path.read_bytes())[0])
    instance = dg.DagsterInstance.ephemeral()
    result = platform.bronze(day(1), day(8), raise_on_error=False, instance=instance)

    message = failures(result)["bronze__flights"]
    assert "1 of 8 flights landing file(s) could not be ingested" in message
    assert "the other 7 day(s) were written" in message and uri(path) in message
    assert (platform.quarantine_dir / "flights" / path.name).exists()
    good = [day(n) for n in range(1, 9) if n != 5]
    stored = platform.store.read("bronze/flights")
    assert sorted(stored["flight_date"].unique().to_list()) == good
    asset = dg.AssetKey(["bronze", "flights"])
    assert instance.get_materialized_partitions(asset) == {d.isoformat() for d in good}
    log = platform.store.read("bronze/flights_landing_log")
    assert log.height == len(good)
    assert stored.height == int(log.select(pl.col("landing_rows").sum() - pl.col("rejected").sum()).item())


def test_traffic_above_the_plan_is_warned_once_for_the_whole_run(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = dataclasses.replace(three_day_slices(), flights_per_day=100)  # 2013 carries ~900 a day
    monkeypatch.setattr(assets.partitions, "RUN_MEMORY", plan)
    instance = dg.DagsterInstance.ephemeral()
    assert platform.bronze(day(1), day(7), instance=instance).success
    warnings = [
        r.user_message
        for r in instance.all_logs(platform_run_id(instance))
        if "PLATFORM_FLIGHTS_PER_DAY plans 100" in r.user_message
    ]
    assert len(warnings) == 1, warnings


def platform_run_id(instance: dg.DagsterInstance) -> str:
    [run] = instance.get_runs()
    return run.run_id
