"""The chain from training set to champion on real assets: training through the local launcher
(a Pipes subprocess), evaluation against baselines and champion, promotion, rejection, reproduction."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import dagster as dg
import pytest
import yaml

from ml.registry import ModelRegistry
from orchestration.maintenance import maintenance
from tests.conftest import ASSETS, PROJECT, TrainingPlatform, day

CHAIN = [
    "training/training_set",
    "training/candidate_model",
    "training/evaluation",
    "deployment/champion_model",
]
FAST_TRAINING = {"max_epochs": 3, "patience": 2}


def set_training(p: TrainingPlatform, values: dict) -> None:
    params = p.repo / "params.yaml"
    data = yaml.safe_load(params.read_text())
    data["train"].update(values)
    params.write_text(yaml.safe_dump(data, sort_keys=False))


@pytest.fixture
def trained(training_platform: TrainingPlatform) -> TrainingPlatform:
    p = training_platform
    set_training(p, FAST_TRAINING)
    p.bronze(day(1), day(14))
    p.features(day(1), day(14))
    return p


def _chain(p: TrainingPlatform, gate: dict | None = None) -> dg.ExecuteInProcessResult:
    config = {"ops": {"training__evaluation": {"config": gate}}} if gate else None
    return dg.materialize(
        ASSETS, selection=CHAIN, resources=p.resources, run_config=config, raise_on_error=False
    )


def test_first_candidate_becomes_champion_with_full_lineage(trained: TrainingPlatform) -> None:
    result = _chain(trained, {"boosted_trees_tolerance": 1.0})
    assert result.success
    registry = ModelRegistry(trained.store)
    champion = registry.champion()
    assert champion is not None and champion.version == 1
    assert champion.feature_table_version == trained.store.version("features/flight_features")
    assert champion.training_set_md5.endswith(".dir")
    assert set(champion.metrics["test"]) >= {"roc_auc", "pr_auc", "log_loss", "brier"}
    assert set(champion.metrics["baselines"]) == {"boosted_trees", "prior_rate"}
    events = {e.asset_key.to_user_string(): e for e in result.get_asset_materialization_events()}
    trained_meta = events["training/candidate_model"].materialization.metadata
    assert trained_meta["registry_version"].value == 1
    assert any(k in trained_meta for k in ("device", "device_name"))
    evaluation_meta = events["training/evaluation"].materialization.metadata
    assert "data:image/png;base64," in evaluation_meta["plot_roc"].value
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks == {"beats_champion": True, "beats_boosted_trees": True}


def test_a_candidate_that_fails_the_gate_is_rejected_and_the_champion_stays(
    trained: TrainingPlatform,
) -> None:
    assert _chain(trained, {"boosted_trees_tolerance": 1.0}).success
    # A crippled second candidate: one epoch at a learning rate too small to learn anything.
    set_training(trained, {"max_epochs": 1, "learning_rate": 1e-7})
    result = _chain(trained, {"boosted_trees_tolerance": 1.0, "champion_margin": 0.0})
    assert not result.success
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks == {"beats_champion": False, "beats_boosted_trees": True}
    registry = ModelRegistry(trained.store)
    statuses = {m.version: m.status for m in registry.versions()}
    assert statuses == {1: "champion", 2: "rejected"}
    promoted = [e for e in result.get_asset_materialization_events() if e.asset_key.path[0] == "deployment"]
    assert promoted == []


def test_reproduce_restores_the_exact_training_set_and_metrics(trained: TrainingPlatform) -> None:
    assert _chain(trained, {"boosted_trees_tolerance": 1.0}).success
    # More days arrive, the lake is compacted and vacuumed, the local DVC cache is lost.
    trained.bronze(day(15), day(20))
    trained.features(day(1), day(20))
    assert maintenance.execute_in_process(
        run_config={"ops": {"compact_and_vacuum": {"config": {"retention_hours": 0}}}},
        resources=trained.resources,
    ).success
    shutil.rmtree(trained.repo / ".dvc" / "cache")
    shutil.rmtree(trained.repo / "data" / "training_set")
    out = trained.root / "reproduced"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "ml.reproduce",
            "--version",
            "1",
            "--lake",
            str(trained.root / "lake"),
            "--repo",
            str(trained.repo),
            "--out",
            str(out),
        ],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "reproduces the snapshot" in done.stdout
    assert "v1 reproduced: same training bytes, same metrics" in done.stdout
    registered = ModelRegistry(trained.store).get(1).metrics["training"]
    again = json.loads((out / "model" / "metrics.json").read_text())
    assert again["test"]["roc_auc"] == registered["test"]["roc_auc"]
