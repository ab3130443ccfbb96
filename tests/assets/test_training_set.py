"""The training-set snapshot: split by time, pinned by DVC, pushed, restorable by md5."""

from __future__ import annotations

import json
import shutil

import dagster as dg
import pytest
import yaml

from ml.registry.dvc_repo import DvcError, DvcRepo
from ml.training.training_set import folder_md5
from tests.conftest import ASSETS, TrainingPlatform, day


def test_snapshot_is_split_by_time_pinned_in_dvc_lock_and_restorable(
    training_platform: TrainingPlatform,
) -> None:
    p = training_platform
    p.bronze(day(1), day(14))
    p.features(day(1), day(14))
    result = p.materialize(["training/training_set"])
    assert result.success
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    lock = yaml.safe_load((p.repo / "dvc.lock").read_text())
    locked = lock["stages"]["training_set"]["outs"][0]
    assert metadata["md5"].value == locked["md5"]
    assert metadata["feature_table_version"].value == p.store.version("features/flight_features")
    assert metadata["train_days"].value == f"{day(1)}..{day(8)}"
    assert metadata["validation_days"].value == f"{day(9)}..{day(11)}"
    assert metadata["test_days"].value == f"{day(12)}..{day(14)}"
    assert 0 < metadata["test_label_rate"].value < 1

    snapshot = p.repo / "data" / "training_set"
    manifest = json.loads((snapshot / "manifest.json").read_text())
    assert manifest["splits"]["train"]["rows"] == metadata["train_rows"].value
    before = folder_md5(snapshot)

    # Wipe the local copy and cache: the remote alone restores the same bytes.
    shutil.rmtree(p.repo / ".dvc" / "cache")
    restored = DvcRepo(p.repo).restore(locked["md5"], p.root / "restored")
    assert folder_md5(restored) == before


def test_without_a_cutoff_the_snapshot_ends_on_the_last_day_whose_splits_are_whole(
    training_platform: TrainingPlatform,
) -> None:
    # Days 13 and 14 are built while 11 and 12 are still missing (late deliveries in flight):
    # ending on day 14 would judge the candidate on a validation split of one day of three.
    p = training_platform
    p.bronze(day(1), day(14))
    p.features(day(1), day(10))
    p.features(day(13), day(14))
    result = p.materialize(["training/training_set"])
    assert result.success
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    assert metadata["cutoff"].value == day(10).isoformat()
    assert metadata["validation_days"].value == f"{day(5)}..{day(7)}"
    assert metadata["test_days"].value == f"{day(8)}..{day(10)}"


def test_a_cutoff_before_any_data_fails_clearly_and_keeps_the_previous_snapshot(
    training_platform: TrainingPlatform,
) -> None:
    p = training_platform
    p.bronze(day(1), day(10))
    p.features(day(1), day(10))
    assert p.materialize(["training/training_set"]).success
    snapshot = p.repo / "data" / "training_set"
    before = folder_md5(snapshot)
    config = {"ops": {"training__training_set": {"config": {"cutoff": "2012-12-01"}}}}
    result = _run(p, config)
    assert not result.success
    assert "no feature rows on or before the cutoff 2012-12-01" in _error(result)
    config = {"ops": {"training__training_set": {"config": {"cutoff": str(day(4))}}}}
    result = _run(p, config)
    assert "would be empty" in _error(result)
    assert folder_md5(snapshot) == before


def test_a_missing_dvc_remote_is_named(training_platform: TrainingPlatform) -> None:
    p = training_platform
    shutil.rmtree(p.root / "dvc-remote")
    with pytest.raises(DvcError, match="DVC remote 'local' is missing"):
        DvcRepo(p.repo).check_remote()


def _run(p: TrainingPlatform, config: dict) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        ASSETS,
        selection=["training/training_set"],
        resources=p.resources,
        run_config=config,
        raise_on_error=False,
    )


def _error(result: dg.ExecuteInProcessResult) -> str:
    failure = next(e for e in result.all_events if e.is_step_failure)
    error = failure.step_failure_data.error
    texts = []
    while error is not None:
        texts.append(error.message)
        error = error.cause
    return "\n".join(texts)
