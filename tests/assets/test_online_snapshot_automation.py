"""The online snapshot follows the features by its automation condition, once per update."""

from __future__ import annotations

import dagster as dg

from assets.partitions import range_tags
from tests.conftest import ASSETS, Platform, day

SNAPSHOT = dg.AssetKey(["features", "online_snapshot"])


def requested(platform: Platform, instance: dg.DagsterInstance, cursor: object = None) -> tuple[bool, object]:
    result = dg.evaluate_automation_conditions(
        defs=dg.Definitions(assets=ASSETS, resources=platform.resources),
        instance=instance,
        asset_selection=dg.AssetSelection.assets(SNAPSHOT),
        cursor=cursor,
    )
    return result.get_num_requested(SNAPSHOT) == 1, result.cursor


def test_new_feature_days_request_one_snapshot_and_bronze_alone_does_not(platform: Platform) -> None:
    instance = dg.DagsterInstance.ephemeral()

    def run(selection: list[str], first: int, last: int) -> None:
        result = dg.materialize(
            ASSETS,
            selection=selection,
            resources=platform.resources,
            instance=instance,
            tags=range_tags(day(first), day(last)),
        )
        assert result.success

    run(["bronze/flights", "bronze/weather"], 1, 10)
    wanted, cursor = requested(platform, instance)
    assert not wanted, "bronze alone must not rebuild the snapshot"
    run(["features/flight_features"], 1, 10)
    wanted, cursor = requested(platform, instance, cursor)
    assert wanted
    wanted, cursor = requested(platform, instance, cursor)
    assert not wanted, "one update, one request"
    run(["bronze/flights", "bronze/weather"], 11, 11)
    run(["features/flight_features"], 11, 11)
    wanted, _ = requested(platform, instance, cursor)
    assert wanted
