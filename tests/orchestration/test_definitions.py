"""The code location loads, and its partitions, mappings, jobs and schedules are what users rely on."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from assets.features import flight_features
from assets.partitions import daily_partitions
from orchestration.definitions import build_definitions
from orchestration.profiles import build_resources

REPO = Path(__file__).resolve().parents[2]


def test_workspace_validates_with_the_dagster_cli(tmp_path: Path) -> None:
    dagster = Path(sys.executable).with_name("dagster")
    result = subprocess.run(
        [str(dagster), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={"PATH": str(dagster.parent), "DAGSTER_HOME": str(tmp_path), "HOME": str(tmp_path)},
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Validation successful" in result.stdout + result.stderr


def test_daily_partitions_cover_2013_inclusive() -> None:
    keys = daily_partitions.get_partition_keys()
    assert (keys[0], keys[-1], len(keys)) == ("2013-01-01", "2013-12-31", 365)


def test_features_depend_on_a_bounded_trailing_window_of_bronze() -> None:
    mapping = flight_features.get_partition_mapping(dg.AssetKey(["bronze", "flights"]))
    upstream = mapping.get_upstream_mapped_partitions_result_for_partitions(
        daily_partitions.subset_with_partition_keys(["2013-12-31"]), daily_partitions, daily_partitions
    ).partitions_subset.get_partition_keys()
    assert (min(upstream), max(upstream), len(upstream)) == ("2013-12-03", "2013-12-31", 29)


def test_jobs_schedules_and_asset_groups() -> None:
    defs = build_definitions()
    assert {"maintenance", "daily_ingestion", "reference_data", "online_snapshot"} <= {
        j.name for j in defs.jobs
    }
    schedule = defs.resolve_schedule_def("weekly_maintenance")
    assert schedule.execution_timezone == "America/New_York"
    graph = defs.resolve_asset_graph()
    assert graph.get(dg.AssetKey(["bronze", "flights"])).group_name == "bronze"
    assert graph.get(dg.AssetKey(["features", "flight_features"])).group_name == "features"


def test_profiles_point_storage_anywhere_and_refuse_unknown_profiles() -> None:
    resources = build_resources(
        {"PLATFORM_LAKE_URI": "s3://bucket/lake", "PLATFORM_STORAGE_OPTIONS": '{"AWS_REGION": "x"}'}
    )
    assert resources["lake"].root == "s3://bucket/lake"  # type: ignore[attr-defined]
    assert resources["lake"].storage_options == {"AWS_REGION": "x"}  # type: ignore[attr-defined]
    assert resources["landing"].root == ".data/landing"  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="PLATFORM_PROFILE"):
        build_resources({"PLATFORM_PROFILE": "nope"})


def test_every_asset_key_names_its_module_and_group() -> None:
    """A reader finds the code of `bronze/flights` in `assets/bronze.py`, in the UI's group `bronze`."""
    graph = build_definitions({}).resolve_asset_graph()
    keys = sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string())
    assert len(keys) >= 13
    for key in keys:
        prefix = key.path[0]
        node = graph.get(key)
        assert node.group_name == prefix, key.to_user_string()
        module = node.assets_def.op.compute_fn.decorated_fn.__module__
        assert module == f"assets.{prefix}", f"{key.to_user_string()} is defined in {module}"
