"""The maintenance job compacts and vacuums every lake table without changing its data."""

from __future__ import annotations

import datetime as dt
import itertools

import dagster as dg
import polars as pl
import pytest

from ml.lake import layout
from ml.lake.delta import MAINTENANCE, OPERATION_KEY
from ml.lake.tables import DRIFT_SIGNALS_TABLE, PREDICTIONS_TABLE
from ml.registry.model_registry import ModelRegistry
from orchestration.maintenance import maintenance
from tests.conftest import ASSETS, Platform, day

MERGING_BUDGET = 1 << 17
"""A cell budget that merges several days of 2013 flights or features into a file (the
shipped one keeps a day of features alone), so these tests see maintenance merge files."""


def test_maintenance_job_compacts_vacuums_and_keeps_rows(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(layout, "CELL_BUDGET", MERGING_BUDGET)
    for n in range(1, 6):
        platform.bronze(day(n))
    store = platform.store
    before = store.read("bronze/flights").sort("flight_date", "carrier", "flight")
    files_before = len(store.table("bronze/flights").file_uris())
    assert files_before == 5

    result = maintenance.execute_in_process(
        run_config={"ops": {"compact_and_vacuum": {"config": {"retention_hours": 0}}}},
        resources=platform.resources,
    )
    assert result.success
    assert len(store.table("bronze/flights").file_uris()) == 1
    on_disk = list((platform.root / "lake" / "bronze" / "flights").glob("*.parquet"))
    assert len(on_disk) == 1
    assert store.read("bronze/flights").sort("flight_date", "carrier", "flight").equals(before)
    history = store.history("bronze/flights", 5)
    assert "VACUUM END" in {h["operation"] for h in history}
    merged = [h for h in history if h.get(OPERATION_KEY) == MAINTENANCE]  # the days now share a file
    assert merged and merged[0]["operation"] == "WRITE"
    assert pl.read_delta(store.uri("bronze/airports")).height > 0


def test_maintenance_finds_and_compacts_every_table_under_the_lake_root(platform: Platform) -> None:
    platform.bronze(day(28), day(29))
    platform.features(day(29))
    store = platform.store
    for table in (PREDICTIONS_TABLE, DRIFT_SIGNALS_TABLE, "monitoring/a_log_added_later"):
        store.overwrite(table, pl.DataFrame({"n": [1]}), {"writer": "test"})
    lake = platform.root / "lake"
    written = {str(log.parent.relative_to(lake)) for log in lake.glob("*/*/_delta_log")}
    assert {"bronze/flights", "bronze/flights_landing_log", "features/flight_features"} <= written
    assert "monitoring/a_log_added_later" in written
    assert store.tables() == sorted(written)

    result = maintenance.execute_in_process(resources=platform.resources)
    assert result.success
    for table in written:
        checkpoints = list((lake / table / "_delta_log").glob("*.checkpoint.parquet"))
        assert checkpoints, f"{table} was not maintained (no checkpoint)"


def _register_on_features(platform: Platform) -> int:
    store = platform.store
    version = int(store.version("features/flight_features"))  # type: ignore[arg-type]
    (platform.root / "models" / "m").mkdir(parents=True)
    ModelRegistry(store).register(
        artifact_uri=str(platform.root / "models" / "m"),
        onnx_uri=str(platform.root / "models" / "m" / "model.onnx"),
        model_md5="m",
        training_set_md5="t",
        feature_table_uri=store.uri("features/flight_features"),
        feature_table_version=version,
        lake_versions={"features/flight_features": version},
        git_commit="abc",
        params={},
        metrics={},
        now=dt.datetime.now(dt.UTC),
    )
    return version


def test_vacuum_keeps_every_version_a_registered_model_read(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(layout, "CELL_BUDGET", MERGING_BUDGET)
    platform.bronze(day(1), day(6))
    for n in range(1, 4):
        platform.features(day(n))
    version = _register_on_features(platform)
    trained_on = platform.store.read("features/flight_features", version).sort(
        "flight_date", "carrier", "flight"
    )
    platform.features(day(1), day(6))  # rewrites every file of that version

    instance = dg.DagsterInstance.ephemeral()
    result = maintenance.execute_in_process(
        run_config={"ops": {"compact_and_vacuum": {"config": {"retention_hours": 0}}}},
        resources=platform.resources,
        instance=instance,
    )
    assert result.success
    messages = [e.user_message for e in instance.all_logs(result.run_id)]
    assert any(f"keeping versions [{version}]" in m for m in messages)
    again = platform.store.read("features/flight_features", version).sort("flight_date", "carrier", "flight")
    assert again.equals(trained_on)
    delta = platform.store.table("features/flight_features")
    files = sorted(layout.live_files(delta, "flight_date") or [], key=lambda f: f.first)
    budget = layout.row_budget(len(delta.schema().fields))
    assert 1 < len(files) < 6  # the six days, merged into day ranges within the budget
    assert all(f.rows <= budget for f in files)
    assert all(a.last < b.first for a, b in itertools.pairwise(files))
    check = dg.materialize(
        ASSETS,
        selection=["features/flight_features"],
        resources=platform.resources,
        partition_key=str(day(2)),
    ).get_asset_check_evaluations()
    assert {c.check_name: c.passed for c in check}["registered_versions_recoverable"]


def test_a_broken_registered_version_fails_the_check_and_stops_maintenance(platform: Platform) -> None:
    platform.bronze(day(1), day(3))
    platform.features(day(1), day(3))
    version = _register_on_features(platform)
    platform.features(day(1), day(3))
    # Someone vacuums by hand, without the registry's keep list.
    platform.store.table("features/flight_features").vacuum(
        retention_hours=0, dry_run=False, enforce_retention_duration=False
    )
    assert version in platform.store.unrecoverable_versions("features/flight_features", [version])

    result = dg.materialize(
        ASSETS,
        selection=["features/flight_features"],
        resources=platform.resources,
        partition_key=str(day(2)),
        raise_on_error=False,
    )
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert not checks["registered_versions_recoverable"].passed
    files_before = sorted(
        p.name for p in (platform.root / "lake" / "features" / "flight_features").glob("*.parquet")
    )
    run = maintenance.execute_in_process(
        run_config={"ops": {"compact_and_vacuum": {"config": {"retention_hours": 0}}}},
        resources=platform.resources,
        raise_on_error=False,
    )
    assert not run.success
    failure = next(e for e in run.all_events if e.is_step_failure)
    assert "already unrecoverable" in str(failure.step_failure_data.error)
    files_after = sorted(
        p.name for p in (platform.root / "lake" / "features" / "flight_features").glob("*.parquet")
    )
    assert files_after == files_before
