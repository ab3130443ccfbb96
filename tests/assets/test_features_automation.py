"""Features follow bronze day by day: a missing day stalls nothing, and its landing rebuilds its window."""

from __future__ import annotations

import datetime as dt

import dagster as dg

from assets.partitions import range_tags
from tests.conftest import ASSETS, Platform, day

FEATURES = dg.AssetKey(["features", "flight_features"])


def requested_days(
    platform: Platform, instance: dg.DagsterInstance, cursor: object
) -> tuple[list[dt.date], object]:
    result = dg.evaluate_automation_conditions(
        defs=dg.Definitions(assets=ASSETS, resources=platform.resources),
        instance=instance,
        asset_selection=dg.AssetSelection.assets(FEATURES),
        cursor=cursor,
    )
    keys = result.get_requested_partitions(FEATURES)
    return sorted(dt.date.fromisoformat(k) for k in keys if k), result.cursor


def materialize(platform: Platform, instance: dg.DagsterInstance, keys: list[str], first: int, last: int):
    result = dg.materialize(
        ASSETS,
        selection=keys,
        resources=platform.resources,
        instance=instance,
        tags=range_tags(day(first), day(last)),
        raise_on_error=False,
    )
    return result


def test_later_days_are_built_without_a_missing_day_and_rebuilt_when_it_lands(platform: Platform) -> None:
    instance = dg.DagsterInstance.ephemeral()
    held_back = platform.landing_dir / "flights" / f"{day(4).isoformat()}.csv"
    kept = held_back.read_bytes()
    held_back.unlink()
    # The sensor's first tick sees nothing to do (Dagster's first evaluation requests nothing).
    wanted, cursor = requested_days(platform, instance, None)
    assert wanted == []
    # Days 1..6 of weather land, and flights of every day but day 4 (its file is missing).
    assert materialize(platform, instance, ["bronze/weather"], 1, 6).success
    assert not materialize(platform, instance, ["bronze/flights"], 1, 6).success

    wanted, cursor = requested_days(platform, instance, cursor)
    assert wanted == [day(n) for n in (1, 2, 3, 5, 6)], "only days whose own bronze landed, none waits"

    assert materialize(platform, instance, ["features/flight_features"], 5, 6).success
    record = instance.get_latest_materialization_event(FEATURES)
    assert record is not None and record.asset_materialization is not None
    metadata = record.asset_materialization.metadata
    assert metadata["missing_window_days"].value == {"bronze/flights": [day(4).isoformat()]}
    (check,) = [
        e.event_specific_data
        for e in (r.dagster_event for r in instance.all_logs(record.run_id))
        if e is not None
        and e.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION
        and e.event_specific_data.check_name == "window_complete"
    ]
    assert not check.passed and day(4).isoformat() in check.metadata["missing"].value
    assert materialize(platform, instance, ["features/flight_features"], 1, 3).success
    wanted, cursor = requested_days(platform, instance, cursor)
    assert wanted == []

    held_back.write_bytes(kept)
    assert materialize(platform, instance, ["bronze/flights"], 4, 4).success
    wanted, _ = requested_days(platform, instance, cursor)
    assert wanted == [day(4), day(5), day(6)], "the landed day and the built days whose window holds it"
