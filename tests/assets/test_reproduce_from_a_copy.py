"""Every registered model, after retrainings and a vacuum, reproduces from a copy of the platform."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from ml.lake.delta import DeltaStore
from ml.lake.tables import FEATURES_TABLE
from ml.registry.model_registry import ModelRegistry, check_artifacts
from orchestration.maintenance import maintenance
from tests.conftest import ASSETS, FAST_TRAINING, PROJECT, TrainingPlatform, day, set_training

CHAIN = [
    "training/training_set",
    "training/candidate_model",
    "training/evaluation",
    "deployment/champion_model",
]
LAST_DAYS = (14, 16, 18)
"""The training sets of v1, v2 and v3 end on these days: each retraining sees two more."""


def _train_up_to(p: TrainingPlatform, last: int) -> dg.ExecuteInProcessResult:
    """Land days up to `last`, rebuild every feature day (old files go unreferenced), run the chain."""
    first_new = 1 if last == LAST_DAYS[0] else last - 1
    p.bronze(day(first_new), day(last))
    p.features(day(1), day(last))
    # The gate may refuse or supersede a retraining: every registered version must reproduce anyway.
    return dg.materialize(ASSETS, selection=CHAIN, resources=p.resources, raise_on_error=False)


def _reproduce(version: int, copy: Path) -> subprocess.CompletedProcess[str]:
    """As an operator of the copy runs it: from the copied repository, locations from the environment."""
    command = [sys.executable, "-m", "ml.reproduce", "--version", str(version)]
    command += ["--out", str(copy / "reproduced" / f"v{version}")]
    env = {**os.environ, "PLATFORM_DATA_DIR": str(copy), "PLATFORM_DVC_REMOTE": str(copy / "dvc-remote")}
    return subprocess.run(command, cwd=copy / "repo", env=env, capture_output=True, text=True, check=False)


def test_every_registered_version_reproduces_from_a_copy_after_retrainings_and_a_vacuum(
    training_platform: TrainingPlatform, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Three retrainings on growing data and a vacuum later, a copy of the repository, lake and DVC
    remote in another folder, with its DVC cache and training set deleted, the original out of
    reach and its training code changed, rebuilds every registered version byte for byte with the
    same metrics, from the training code of the version's commit."""
    p = training_platform
    set_training(p, FAST_TRAINING)
    # Committed, so every version records a clean commit whose training code can be taken back.
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@localhost", "commit", "-qam", "fast training"],
        cwd=p.repo,
        check=True,
    )
    for last in LAST_DAYS:
        result = _train_up_to(p, last)
        assert result.is_node_success("training__candidate_model"), f"training up to day {last} failed"
    models = p.registry.versions()
    assert [m.version for m in models] == [1, 2, 3]
    assert len({m.training_set_md5 for m in models}) == 3
    assert len({m.lake_versions[FEATURES_TABLE] for m in models}) == 3
    assert maintenance.execute_in_process(
        run_config={"ops": {"compact_and_vacuum": {"config": {"retention_hours": 0}}}},
        resources=p.resources,
    ).success

    copy = tmp_path_factory.mktemp("copied") / "platform"
    shutil.copytree(p.root, copy)
    assert {"repo", "lake", "dvc-remote"} <= {child.name for child in copy.iterdir()}
    shutil.rmtree(copy / "repo" / ".dvc" / "cache")
    shutil.rmtree(copy / "repo" / "data" / "training_set")
    # The training loop changed since: the copy's checkout can no longer train at all, so only
    # the registered commit's training code can give the registered models back.
    changed = copy / "repo" / "ml" / "training" / "train.py"
    changed.write_text('raise SystemExit("this loop is not the registered one")\n')

    away = p.root.with_name(p.root.name + "-away")
    p.root.rename(away)
    try:
        for model in models:
            n = model.version
            done = _reproduce(n, copy)
            output = f"v{n} ({model.status}): exit {done.returncode}\n{done.stdout}{done.stderr}"
            assert done.returncode == 0, output
            assert "reproduces the snapshot" in done.stdout, output
            assert f"retraining with the training code of commit {model.git_commit[:12]}" in done.stdout, (
                output
            )
            assert "byte-identical to the registered model md5" in done.stdout, output
            verdict = f"v{n} reproduced: same training bytes, same metrics, same model files"
            assert verdict in done.stdout, output
        # The registry names models by key, so the copy reads its own artifacts, not the original's.
        copied = ModelRegistry(DeltaStore(str(copy / "lake")), str(copy / "models"))
        for model in copied.versions():
            assert model.artifact_uri.startswith(str(copy / "models")), model.artifact_uri
            check_artifacts(model)
        # And the lineage still walks down to every landing file, md5 by md5, from the copy.
        walk = [sys.executable, "-m", "ml.lineage", "--version", "3", "--repo", str(copy / "repo")]
        walk += ["--dvc-remote", str(copy / "dvc-remote")]
        env = {**os.environ, "PLATFORM_DATA_DIR": str(copy)}
        traced = subprocess.run(walk, cwd=PROJECT, env=env, capture_output=True, text=True, timeout=300)
        assert traced.returncode == 0, traced.stdout + traced.stderr
        assert "every link checked" in traced.stdout
    finally:
        away.rename(p.root)
