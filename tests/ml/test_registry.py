"""Registry transitions: one champion at a time, the gate's say over who can serve, the freeze."""

from __future__ import annotations

import datetime as dt
import itertools
from pathlib import Path

import pytest

from ml.lake.delta import DeltaStore
from ml.lake.tables import REGISTRY_MODELS
from ml.registry.candidates import candidate_of_run
from ml.registry.model_registry import FILES, ModelRegistry, RegistryError, check_artifacts, file_md5s

NOW = dt.datetime(2026, 11, 2, 9, 30, tzinfo=dt.UTC)
SECONDS = itertools.count()
PASSED = {"passed": True, "beats_champion": "ok", "beats_boosted_trees": "ok"}
FAILED = {"passed": False, "beats_champion": "AUC 0.61 < champion 0.70 - 0.005", "beats_boosted_trees": "ok"}


def at() -> dt.datetime:
    """A clock that moves a second per reading: registry events are ordered by time."""
    return NOW + dt.timedelta(seconds=next(SECONDS))


def register(
    registry: ModelRegistry, folder: Path, auc: float, gate: dict | None = None, md5s: bool = False
) -> int:
    """A version over a folder of stand-in files; `md5s` records their md5s as registration does."""
    folder.mkdir(parents=True)
    (folder / "model.onnx").write_bytes(b"onnx")
    (folder / "preprocess.json").write_text("{}")
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
        metrics={"roc_auc": auc, **({"gate": gate} if gate is not None else {})},
        now=at(),
        lineage={FILES: file_md5s(folder)} if md5s else None,
    )


def statuses(registry: ModelRegistry) -> dict[int, str]:
    return {m.version: m.status for m in registry.versions()}


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(DeltaStore(str(tmp_path / "lake")))


def test_versions_count_up_and_a_new_candidate_supersedes_the_waiting_one_in_the_same_write(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    assert register(registry, tmp_path / "a", 0.7) == 1
    before = registry.store.version(REGISTRY_MODELS)
    assert register(registry, tmp_path / "b", 0.71) == 2
    assert registry.store.version(REGISTRY_MODELS) == before + 1  # type: ignore[operator]
    assert statuses(registry) == {1: "superseded", 2: "candidate"}
    assert registry.last_reason(1) == "superseded by v2 before evaluation"
    assert registry.get(2).metrics == {"roc_auc": 0.71}
    assert registry.get(1).lake_versions == {"features/flight_features": 3}
    assert registry.champion() is None
    for change in (registry.promote, registry.promote_passed, registry.rollback):
        with pytest.raises(RegistryError, match="version 1 was superseded by v2 before evaluation"):
            change(1, "try", now=at())
    # An evaluated candidate that is still waiting (promotions frozen) is superseded "before promotion".
    registry.update_metrics(2, {"gate": PASSED})
    register(registry, tmp_path / "c", 0.72)
    assert registry.last_reason(2) == "superseded by v3 before promotion"
    assert statuses(registry) == {1: "superseded", 2: "superseded", 3: "candidate"}


def test_promotion_archives_the_previous_champion_and_rollback_restores_it(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    v1 = register(registry, tmp_path / "a", 0.7, PASSED)
    assert registry.promote_passed(v1, "gate passed", now=at()) is None
    v2 = register(registry, tmp_path / "b", 0.72, PASSED)
    previous = registry.promote_passed(v2, "gate passed", now=at())
    assert previous is not None and previous.version == v1
    assert statuses(registry) == {v1: "archived", v2: "champion"}
    registry.rollback(v1, "bad predictions in production", now=at())
    assert statuses(registry) == {v1: "champion", v2: "archived"}
    events = registry.events()
    assert set(events["to_status"].to_list()[-2:]) == {"champion", "archived"}
    assert "bad predictions in production" in events["reason"].to_list()


def test_rollback_to_a_version_that_was_never_evaluated_is_refused(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    v1 = register(registry, tmp_path / "a", 0.7, PASSED)
    registry.promote_passed(v1, "gate passed", now=at())
    v2 = register(registry, tmp_path / "b", 0.72)
    with pytest.raises(RegistryError, match="model version 2 was never evaluated and was never champion"):
        registry.rollback(v2, now=at())
    with pytest.raises(
        RegistryError, match="model version 2 was never evaluated; only a version that passed"
    ):
        registry.promote_passed(v2, "cli", now=at())
    assert statuses(registry) == {v1: "champion", v2: "candidate"}


def test_rollback_to_a_version_that_failed_its_gate_is_refused_even_if_not_marked_rejected(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    v1 = register(registry, tmp_path / "a", 0.7, PASSED)
    registry.promote_passed(v1, "gate passed", now=at())
    # The gate's verdict was recorded but the step died before it marked the version rejected.
    v2 = register(registry, tmp_path / "b", 0.61, FAILED)
    with pytest.raises(
        RegistryError, match=r"model version 2 failed its promotion gate \(.*beats_champion: AUC 0.61"
    ):
        registry.rollback(v2, now=at())
    with pytest.raises(RegistryError, match="model version 2 failed its promotion gate"):
        registry.promote_passed(v2, "cli", now=at())
    assert registry.champion().version == v1  # type: ignore[union-attr]


def test_rollback_to_an_earlier_champion_is_allowed_without_a_gate_and_while_frozen(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    v1 = register(registry, tmp_path / "a", 0.7)  # installed before the gate existed: no verdict
    registry.promote(v1, "first champion", now=at())
    v2 = register(registry, tmp_path / "b", 0.72, PASSED)
    registry.promote_passed(v2, "gate passed", now=at())
    assert registry.served_before(v1) and not registry.served_before(99)
    registry.freeze("incident 42: hold the model", now=at())
    previous = registry.rollback(v1, "v2 drifts", now=at())
    assert previous is not None and previous.version == v2
    assert statuses(registry) == {v1: "champion", v2: "archived"}


def test_a_version_whose_artifacts_are_gone_is_refused_and_the_champion_stays(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    v1 = register(registry, tmp_path / "a", 0.7, PASSED)
    registry.promote_passed(v1, "first", now=at())
    v2 = register(registry, tmp_path / "b", 0.72, PASSED)
    (tmp_path / "b" / "model.onnx").unlink()
    with pytest.raises(RegistryError, match=r"version 2 points at .*model.onnx, which does not exist"):
        registry.rollback(v2, now=at())
    assert registry.champion().version == v1  # type: ignore[union-attr]


def test_a_version_whose_files_changed_after_registration_is_refused_by_md5(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    v1 = register(registry, tmp_path / "a", 0.7, PASSED, md5s=True)
    registry.promote_passed(v1, "first", now=at())
    v2 = register(registry, tmp_path / "b", 0.72, PASSED, md5s=True)
    recorded = registry.get(v2).lineage[FILES]
    assert recorded == {
        "model.onnx": "bf026195c185e2ae02bd1e505f515155",
        "preprocess.json": recorded["preprocess.json"],
    }
    (tmp_path / "b" / "model.onnx").write_bytes(b"onnY")  # loadable or not, not what was judged
    with pytest.raises(
        RegistryError,
        match=r"model version 2: model.onnx has md5 \w+, but bf026195c185e2ae02bd1e505f515155 was registered",
    ):
        registry.promote_passed(v2, "gate passed", now=at())
    (tmp_path / "b" / "model.onnx").write_bytes(b"onnx")
    (tmp_path / "b" / "preprocess.json").unlink()
    with pytest.raises(RegistryError, match=r"model version 2 lacks preprocess.json \("):
        registry.rollback(v2, now=at())
    assert registry.champion().version == v1  # type: ignore[union-attr]
    (tmp_path / "b" / "preprocess.json").write_text("{}")
    registry.promote_passed(v2, "files restored", now=at())
    assert statuses(registry) == {v1: "archived", v2: "champion"}


def test_a_version_registered_before_md5s_is_checked_for_presence_only(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    v1 = register(registry, tmp_path / "a", 0.7, PASSED)
    (tmp_path / "a" / "model.onnx").write_bytes(b"changed")
    check_artifacts(registry.get(v1))
    registry.promote_passed(v1, "older row", now=at())
    assert statuses(registry) == {v1: "champion"}


def test_rejected_versions_and_unknown_versions_cannot_become_champion(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    v1 = register(registry, tmp_path / "a", 0.6, FAILED)
    registry.reject(v1, "worse than boosted trees", now=at())
    for change in (registry.rollback, registry.promote):
        with pytest.raises(RegistryError, match="version 1 was rejected"):
            change(v1, "try", now=at())
    with pytest.raises(RegistryError, match="version 9 is not registered"):
        registry.rollback(9, now=at())


def test_a_malformed_gate_verdict_is_named_by_version_and_field(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    v1 = register(registry, tmp_path / "a", 0.7, {"passed": "yes"})
    with pytest.raises(RegistryError, match=r"model version 1: metrics.gate is \{'passed': 'yes'\}"):
        registry.promote_passed(v1, "cli", now=at())


def test_a_freeze_refuses_promotion_until_unfrozen(registry: ModelRegistry, tmp_path: Path) -> None:
    assert registry.frozen() is None
    v1 = register(registry, tmp_path / "a", 0.7, PASSED)
    with pytest.raises(RegistryError, match="a freeze needs a reason"):
        registry.freeze("  ", now=at())
    registry.freeze("holiday traffic", now=NOW, by="ana")
    freeze = registry.frozen()
    assert freeze is not None and (freeze.by, freeze.reason, freeze.since) == ("ana", "holiday traffic", NOW)
    for change in (registry.promote, registry.promote_passed):
        with pytest.raises(RegistryError) as refused:
            change(v1, "gate passed", now=at())
        message = str(refused.value)
        assert "promotions are frozen since 2026-11-02 09:30 UTC by ana: holiday traffic" in message
        assert "python -m ml.registry.cli unfreeze" in message
        assert "python -m ml.registry.cli promote 1" in message
    assert statuses(registry) == {v1: "candidate"}
    lifted = registry.unfreeze(now=at() + dt.timedelta(hours=1), by="ana")
    assert lifted == freeze and registry.frozen() is None
    assert registry.unfreeze(now=at()) is None
    registry.promote_passed(v1, "after the freeze", now=at())
    assert statuses(registry) == {v1: "champion"}


def test_a_run_acts_on_the_candidate_it_trained_or_fails_when_it_is_no_longer_one(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    with pytest.raises(RegistryError, match="no model version with status candidate"):
        candidate_of_run(registry, None)
    v1 = register(registry, tmp_path / "a", 0.7)
    assert candidate_of_run(registry, v1).version == v1
    v2 = register(registry, tmp_path / "b", 0.7)
    assert candidate_of_run(registry, None).version == v2
    with pytest.raises(
        RegistryError, match=r"model version 1, trained by this run, is superseded \(superseded by v2 before"
    ):
        candidate_of_run(registry, v1)
