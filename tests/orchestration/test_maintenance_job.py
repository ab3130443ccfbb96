"""The maintenance job compacts and vacuums every lake table without changing its data."""

from __future__ import annotations

import polars as pl

from orchestration.maintenance import maintenance
from tests.conftest import Platform, day


def test_maintenance_job_compacts_vacuums_and_keeps_rows(platform: Platform) -> None:
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
    assert {h["operation"] for h in history} >= {"OPTIMIZE", "VACUUM END"}
    assert pl.read_delta(store.uri("bronze/airports")).height > 0
