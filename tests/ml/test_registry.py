"""Registry transitions: one champion at a time, rollback, refusal of broken versions."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from ml.lake.delta import DeltaStore
from ml.registry.model_registry import ModelRegistry, RegistryError


def register(registry: ModelRegistry, folder: Path, auc: float) -> int:
    folder.mkdir(parents=True)
    (folder / "model.onnx").write_bytes(b"onnx")
    return registry.register(
        artifact_uri=str(folder),
        onnx_uri=str(folder / "model.onnx"),
        model_md5="m",
        training_set_md5="t",
        feature_table_uri="lake/features",
        feature_table_version=3,
        lake_versions={"features/flight_features": 3},
        git_commit="abc",
        params={"seed": 1},
        metrics={"roc_auc": auc},
        now=dt.datetime.now(dt.UTC),
    )


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(DeltaStore(str(tmp_path / "lake")))


def test_versions_count_up_and_start_as_candidates(registry: ModelRegistry, tmp_path: Path) -> None:
    assert register(registry, tmp_path / "a", 0.7) == 1
    assert register(registry, tmp_path / "b", 0.71) == 2
    assert [m.status for m in registry.versions()] == ["candidate", "candidate"]
    assert registry.get(2).metrics == {"roc_auc": 0.71}
    assert registry.get(1).lake_versions == {"features/flight_features": 3}
    assert registry.champion() is None


def test_promotion_archives_the_previous_champion_and_rollback_restores_it(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    v1, v2 = register(registry, tmp_path / "a", 0.7), register(registry, tmp_path / "b", 0.72)
    assert registry.promote(v1, "gate passed", now=dt.datetime.now(dt.UTC)) is None
    previous = registry.promote(v2, "gate passed", now=dt.datetime.now(dt.UTC))
    assert previous is not None and previous.version == v1
    assert {m.version: m.status for m in registry.versions()} == {v1: "archived", v2: "champion"}
    registry.rollback(v1, "bad predictions in production", now=dt.datetime.now(dt.UTC))
    assert {m.version: m.status for m in registry.versions()} == {v1: "champion", v2: "archived"}
    events = registry.events()
    assert set(events["to_status"].to_list()[-2:]) == {"champion", "archived"}
    assert "bad predictions in production" in events["reason"].to_list()


def test_a_version_whose_artifacts_are_gone_is_refused_and_the_champion_stays(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    v1, v2 = register(registry, tmp_path / "a", 0.7), register(registry, tmp_path / "b", 0.72)
    registry.promote(v1, "first", now=dt.datetime.now(dt.UTC))
    (tmp_path / "b" / "model.onnx").unlink()
    with pytest.raises(RegistryError, match=r"version 2 points at .*model.onnx, which does not exist"):
        registry.rollback(v2, now=dt.datetime.now(dt.UTC))
    assert registry.champion().version == v1  # type: ignore[union-attr]


def test_rejected_versions_and_unknown_versions_cannot_become_champion(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    v1 = register(registry, tmp_path / "a", 0.6)
    registry.reject(v1, "worse than boosted trees", now=dt.datetime.now(dt.UTC))
    with pytest.raises(RegistryError, match="rejected"):
        registry.rollback(v1, now=dt.datetime.now(dt.UTC))
    with pytest.raises(RegistryError, match="version 9 is not registered"):
        registry.rollback(9, now=dt.datetime.now(dt.UTC))
