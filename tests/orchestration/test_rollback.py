"""Rollback is one command and one job, and refuses versions that cannot serve."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

from ml.lake.delta import DeltaStore
from ml.registry.model_registry import ModelRegistry
from orchestration.registry_jobs import rollback
from resources import LakeResource

PROJECT = Path(__file__).resolve().parents[2]


def _registry_with_two(tmp_path: Path) -> ModelRegistry:
    registry = ModelRegistry(DeltaStore(str(tmp_path / "lake")))
    for name in ("a", "b"):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "model.onnx").write_bytes(b"x")
        version = registry.register(
            artifact_uri=str(folder),
            onnx_uri=str(folder / "model.onnx"),
            model_md5=name,
            training_set_md5=name,
            feature_table_uri="f",
            feature_table_version=1,
            lake_versions={},
            git_commit="c",
            params={},
            metrics={"test": {"roc_auc": 0.7}},
            now=dt.datetime.now(dt.UTC),
        )
        registry.promote(version, "test", now=dt.datetime.now(dt.UTC))
    return registry


def test_rollback_job_makes_an_earlier_version_champion(tmp_path: Path) -> None:
    registry = _registry_with_two(tmp_path)
    result = rollback.execute_in_process(
        run_config={"ops": {"rollback_champion": {"config": {"version": 1, "reason": "v2 drifts"}}}},
        resources={"lake": LakeResource(root=str(tmp_path / "lake"))},
    )
    assert result.success
    assert {m.version: m.status for m in registry.versions()} == {1: "champion", 2: "archived"}
    assert "v2 drifts" in registry.events()["reason"].to_list()


def test_rollback_command_and_its_refusal_of_a_deleted_artifact(tmp_path: Path) -> None:
    registry = _registry_with_two(tmp_path)
    command = [sys.executable, "-m", "ml.registry.cli", "--lake", str(tmp_path / "lake"), "rollback", "1"]
    done = subprocess.run(command, cwd=PROJECT, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "v1 is the champion; v2 archived" in done.stdout
    (tmp_path / "b" / "model.onnx").unlink()
    command[-1] = "2"
    done = subprocess.run(command, cwd=PROJECT, capture_output=True, text=True, check=False)
    assert done.returncode == 2
    assert "version 2 points at" in done.stderr and "does not exist" in done.stderr
    assert registry.champion().version == 1  # type: ignore[union-attr]


def test_the_registry_command_reads_the_platforms_lake_from_the_environment(tmp_path: Path) -> None:
    _registry_with_two(tmp_path)
    command = [sys.executable, "-m", "ml.registry.cli", "list"]
    for env in ({"PLATFORM_DATA_DIR": str(tmp_path)}, {"PLATFORM_LAKE_URI": str(tmp_path / "lake")}):
        done = subprocess.run(
            command, cwd=PROJECT, capture_output=True, text=True, check=False, env={**os.environ, **env}
        )
        assert done.returncode == 0, done.stderr
        assert str(tmp_path / "lake" / "registry" / "models") in done.stderr
        assert [line.split()[0] for line in done.stdout.splitlines()[2:]] == ["1", "2"]
