"""Rollback and promotion from one command and one job, refusing versions that cannot serve, and the
champion's page (deployment/champion_model) kept in step with the registry."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from assets.deployment import CHAMPION_KEY
from ml.lake.delta import DeltaStore
from ml.registry.cli import main
from ml.registry.model_registry import ModelRegistry
from orchestration.registry_jobs import champion_sync, rollback
from resources import ArtifactsResource, LakeResource

PROJECT = Path(__file__).resolve().parents[2]
PASSED = {"passed": True, "beats_champion": "ok", "beats_boosted_trees": "ok"}


def _register(registry: ModelRegistry, folder: Path, metrics: dict) -> int:
    folder.mkdir()
    (folder / "model.onnx").write_bytes(b"x")
    return registry.register(
        artifact_uri=str(folder),
        onnx_uri=str(folder / "model.onnx"),
        model_md5=folder.name,
        training_set_md5=folder.name,
        feature_table_uri="f",
        feature_table_version=1,
        lake_versions={},
        git_commit="c",
        params={},
        metrics=metrics,
        now=dt.datetime.now(dt.UTC),
    )


def _registry_with_two(tmp_path: Path) -> ModelRegistry:
    """v1 archived, v2 champion: both served."""
    registry = ModelRegistry(DeltaStore(str(tmp_path / "lake")))
    for name, auc in (("a", 0.7), ("b", 0.71)):
        version = _register(registry, tmp_path / name, {"test": {"roc_auc": auc}})
        registry.promote(version, "test", now=dt.datetime.now(dt.UTC))
    return registry


def _cli(tmp_path: Path, *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["--lake", str(tmp_path / "lake"), *args])
    out, err = capsys.readouterr()
    return code, out, err


def _metadata(entry: dg.EventLogEntry | None) -> dict[str, object]:
    assert entry is not None and entry.asset_materialization is not None
    return {k: v.value for k, v in entry.asset_materialization.metadata.items()}


def test_rollback_job_makes_an_earlier_version_champion_and_shows_it_on_the_champion_asset(
    tmp_path: Path,
) -> None:
    registry = _registry_with_two(tmp_path)
    instance = dg.DagsterInstance.ephemeral()
    result = rollback.execute_in_process(
        run_config={"ops": {"rollback_champion": {"config": {"version": 1, "reason": "v2 drifts"}}}},
        resources={
            "lake": LakeResource(root=str(tmp_path / "lake")),
            "artifacts": ArtifactsResource(root=str(tmp_path / "models")),
        },
        instance=instance,
    )
    assert result.success
    assert {m.version: m.status for m in registry.versions()} == {1: "champion", 2: "archived"}
    assert "v2 drifts" in registry.events()["reason"].to_list()
    shown = _metadata(instance.get_latest_materialization_event(CHAMPION_KEY))
    assert shown == {
        "champion_version": 1,
        "previous_champion": 2,
        "reason": "v2 drifts",
        "trigger": "rollback",
        "model_md5": "a",
        "training_set_md5": "a",
        "roc_auc": 0.7,
        "promotions_frozen": False,
    }


def test_the_rollback_job_refuses_a_version_that_never_passed_a_gate(tmp_path: Path) -> None:
    registry = _registry_with_two(tmp_path)
    unevaluated = _register(registry, tmp_path / "c", {})
    result = rollback.execute_in_process(
        run_config={"ops": {"rollback_champion": {"config": {"version": unevaluated}}}},
        resources={
            "lake": LakeResource(root=str(tmp_path / "lake")),
            "artifacts": ArtifactsResource(root=str(tmp_path / "models")),
        },
        raise_on_error=False,
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "model version 3 was never evaluated and was never champion" in str(
        failure.step_failure_data.error
    )
    assert registry.champion().version == 2  # type: ignore[union-attr]


def test_champion_sync_records_a_command_line_rollback_and_nothing_when_in_sync(tmp_path: Path) -> None:
    _registry_with_two(tmp_path)
    instance = dg.DagsterInstance.ephemeral()
    lake = LakeResource(root=str(tmp_path / "lake"))
    rollback.execute_in_process(
        run_config={"ops": {"rollback_champion": {"config": {"version": 1}}}},
        resources={"lake": lake, "artifacts": ArtifactsResource(root=str(tmp_path / "models"))},
        instance=instance,
    )

    def tick() -> dg.SensorResult | dg.SkipReason:
        return champion_sync(dg.build_sensor_context(instance=instance, resources={"lake": lake}))

    in_sync = tick()
    assert isinstance(in_sync, dg.SkipReason) and "shows the registry's champion v1" in str(
        in_sync.skip_message
    )
    # v2 served before, so the command line may roll back to it; no run sees that change.
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "ml.registry.cli",
            "--lake",
            str(tmp_path / "lake"),
            "rollback",
            "2",
            "--reason",
            "v1 was fine, v2 is better",
        ],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    changed = tick()
    assert isinstance(changed, dg.SensorResult) and changed.asset_events is not None
    [event] = changed.asset_events
    assert isinstance(event, dg.AssetMaterialization) and event.asset_key == CHAMPION_KEY
    shown = {k: v.value for k, v in event.metadata.items()}
    assert shown["champion_version"] == 2 and shown["previous_champion"] == 1
    assert shown["reason"] == "v1 was fine, v2 is better"
    assert shown["trigger"] == "registry change outside a run"
    instance.report_runless_asset_event(event)
    assert _metadata(instance.get_latest_materialization_event(CHAMPION_KEY))["champion_version"] == 2
    assert isinstance(tick(), dg.SkipReason)

    # A freeze from the command line shows on the asset too, once, and so does its end.
    registry = ModelRegistry(DeltaStore(str(tmp_path / "lake")))
    for freeze, expected in ((True, "incident"), (False, "promotions allowed again")):
        if freeze:
            registry.freeze("incident", now=dt.datetime.now(dt.UTC))
        else:
            registry.unfreeze(now=dt.datetime.now(dt.UTC))
        observed = tick()
        assert isinstance(observed, dg.SensorResult) and observed.asset_events is not None
        [observation] = observed.asset_events
        assert isinstance(observation, dg.AssetObservation)
        assert observation.metadata["promotions_frozen"].value is freeze
        assert expected in str(observation.metadata["freeze"].value)
        instance.report_runless_asset_event(observation)
        assert isinstance(tick(), dg.SkipReason)


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


def test_promote_command_takes_only_a_passed_gate_and_waits_for_unfreeze(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = _registry_with_two(tmp_path)
    unevaluated = _register(registry, tmp_path / "c", {})
    code, _, err = _cli(tmp_path, "promote", str(unevaluated), capsys=capsys)
    assert code == 2 and "model version 3 was never evaluated" in err
    passed = _register(registry, tmp_path / "d", {"test": {"roc_auc": 0.72}, "gate": PASSED})
    code, out, _ = _cli(tmp_path, "freeze", "--reason", "holiday traffic", capsys=capsys)
    assert code == 0 and "promotions are frozen since" in out and "holiday traffic" in out
    code, _, err = _cli(tmp_path, "promote", str(passed), capsys=capsys)
    assert code == 2
    assert "promotions are frozen since" in err and "holiday traffic" in err
    assert (
        "python -m ml.registry.cli unfreeze" in err and f"python -m ml.registry.cli promote {passed}" in err
    )
    assert registry.get(passed).status == "candidate"
    code, out, _ = _cli(tmp_path, "list", capsys=capsys)
    assert code == 0 and out.rstrip().splitlines()[-1].startswith("promotions are frozen since")
    code, out, _ = _cli(tmp_path, "rollback", "1", "--reason", "emergency", capsys=capsys)
    assert code == 0 and "v1 is the champion; v2 archived" in out
    code, out, _ = _cli(tmp_path, "unfreeze", capsys=capsys)
    assert code == 0 and "promotions are allowed again" in out
    code, out, _ = _cli(tmp_path, "promote", str(passed), "--reason", "held over the holidays", capsys=capsys)
    assert code == 0 and f"v{passed} is the champion; v1 archived" in out
    assert out.rstrip().splitlines()[-1] == "promotions: allowed"
    assert registry.last_reason(passed) == "held over the holidays"


def test_the_registry_command_reads_the_platforms_lake_from_the_environment(tmp_path: Path) -> None:
    _registry_with_two(tmp_path)
    command = [sys.executable, "-m", "ml.registry.cli", "list"]
    for env in ({"PLATFORM_DATA_DIR": str(tmp_path)}, {"PLATFORM_LAKE_URI": str(tmp_path / "lake")}):
        done = subprocess.run(
            command, cwd=PROJECT, capture_output=True, text=True, check=False, env={**os.environ, **env}
        )
        assert done.returncode == 0, done.stderr
        assert str(tmp_path / "lake" / "registry" / "models") in done.stderr
        table = done.stdout.split("\n\n")[0].splitlines()
        assert [line.split()[0] for line in table[2:]] == ["1", "2"]
