"""The chain from training set to champion on real assets: training through the local launcher
(a Pipes subprocess), evaluation against baselines and champion, promotion, rejection, reproduction,
a run acting on its own model only, and an operator's freeze."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
import yaml

from assets.deployment import CHAMPION_KEY
from assets.training import candidate_model, evaluation
from ml.registry.cli import main as registry_cli
from ml.registry.model_registry import ModelRegistry
from ml.training.training_set import folder_md5
from orchestration.maintenance import maintenance
from orchestration.registry_jobs import champion_sync
from resources import ArtifactsResource, LakeResource, LocalLauncher, TrainingRequest
from tests.conftest import ASSETS, FAST_TRAINING, PROJECT, TrainingPlatform, day, failures, set_training

CHAIN = [
    "training/training_set",
    "training/candidate_model",
    "training/evaluation",
    "deployment/champion_model",
]


@pytest.fixture
def trained(training_platform: TrainingPlatform) -> TrainingPlatform:
    p = training_platform
    set_training(p, FAST_TRAINING)
    p.bronze(day(1), day(14))
    p.features(day(1), day(14))
    return p


def _chain(
    p: TrainingPlatform,
    gate: dict | None = None,
    selection: list[str] = CHAIN,
    extra: tuple[dg.AssetsDefinition, ...] = (),
    instance: dg.DagsterInstance | None = None,
) -> dg.ExecuteInProcessResult:
    config = {"ops": {"training__evaluation": {"config": gate}}} if gate else None
    return dg.materialize(
        [*ASSETS, *extra],
        selection=[*selection, *(a.key.to_user_string() for a in extra)],
        resources=p.resources,
        run_config=config,
        raise_on_error=False,
        instance=instance,
    )


def test_first_candidate_becomes_champion_with_full_lineage(trained: TrainingPlatform) -> None:
    result = _chain(trained)
    assert result.success
    registry = trained.registry
    champion = registry.champion()
    assert champion is not None and champion.version == 1
    assert champion.feature_table_version == trained.store.version("features/flight_features")
    assert champion.training_set_md5.endswith(".dir")
    assert set(champion.metrics["test"]) >= {"roc_auc", "pr_auc", "log_loss", "brier"}
    assert set(champion.metrics["baselines"]) == {"boosted_trees", "prior_rate"}
    trees = champion.metrics["baselines"]["boosted_trees"]
    assert trees["settings"]["iterations"] >= 1 and 0 < trees["validation_auc"] < 1
    test = champion.metrics["test"]
    assert test["roc_auc_low"] <= test["roc_auc_high"]
    events = {e.asset_key.to_user_string(): e for e in result.get_asset_materialization_events()}
    trained_meta = events["training/candidate_model"].materialization.metadata
    assert trained_meta["registry_version"].value == 1
    assert any(k in trained_meta for k in ("device", "device_name"))
    evaluation_meta = events["training/evaluation"].materialization.metadata
    for plot in ("plot_roc", "plot_auc_intervals"):
        assert "data:image/png;base64," in evaluation_meta[plot].value
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks == {
        "beats_champion": True,
        "beats_boosted_trees": True,
        "calibrated": True,
        "clean_source": True,
    }

    # The decision and its figures: in the registry, in evaluation.json beside the model, in the UI.
    gate = champion.metrics["gate"]
    assert gate["passed"] is True and gate["margins"] == {"champion": 0.005, "boosted_trees": 1.0}
    assert (gate["resamples"], gate["confidence"], gate["seed"], gate["days"]) == (1000, 0.95, 0, 3)
    assert gate["comparisons"]["champion"] is None
    versus_trees = gate["comparisons"]["boosted_trees"]
    assert versus_trees["low"] <= versus_trees["high"] and versus_trees["margin"] == 1.0
    assert gate["calibration"]["max"] == 1.0 and gate["calibration"]["passed"] is True
    assert champion.metrics["selection"] == {
        "early_stopping": "validation",
        "calibration": "validation",
        "baseline_tuning": "validation",
        "gate": "test",
    }
    report = json.loads((Path(champion.artifact_uri) / "evaluation" / "evaluation.json").read_text())
    assert report["gate"] == gate and report["selection"] == champion.metrics["selection"]
    assert evaluation_meta["auc_diff_vs_boosted_trees_low"].value == versus_trees["low"]
    assert evaluation_meta["gate_passed"].value is True
    assert "| vs boosted_trees |" in evaluation_meta["gate"].value

    # Lineage: the key under the artifacts root, the bronze versions the features read, the tree, the run.
    stored = trained.store.read("registry/models").row(0, named=True)
    assert (
        stored["artifact_uri"] == Path(champion.artifact_uri).name
        and not Path(stored["artifact_uri"]).is_absolute()
    )
    assert champion.artifact_uri == str(trained.root / "models" / stored["artifact_uri"])
    lineage = champion.lineage
    assert lineage["run_id"] == result.run_id
    assert lineage["bronze_versions"] == {
        "bronze/flights": [trained.store.version("bronze/flights")],
        "bronze/planes": [trained.store.version("bronze/planes")],
        "bronze/weather": [trained.store.version("bronze/weather")],
    }
    assert lineage["source"]["commit"] == champion.git_commit.removesuffix("-dirty")
    assert lineage["source"]["dvc_lock"] in ("untracked", "modified", "committed")
    registry_commits = trained.store.history("registry/models")
    assert {c.get("run_id") for c in registry_commits if "registry_change" in c} == {result.run_id}
    assert trained_meta["lineage_complete"].value is True
    assert trained_meta["registered_by_run"].value == result.run_id
    landing = trained_meta["landing_files"].value
    for n in (1, 14):
        for dataset in ("flights", "weather"):
            name = f"{dataset}/{day(n).isoformat()}.csv"
            digest = hashlib.md5((trained.landing_dir / name).read_bytes()).hexdigest()
            assert f"| {name} | {digest} |" in landing


def test_a_candidate_that_fails_the_gate_is_rejected_and_the_champion_stays(
    trained: TrainingPlatform,
) -> None:
    assert _chain(trained).success
    # A crippled second candidate: one epoch at a learning rate too small to learn anything.
    set_training(trained, {"max_epochs": 1, "learning_rate": 1e-7})
    result = _chain(trained, {"champion_margin": 0.0})
    assert not result.success
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks == {
        "beats_champion": False,
        "beats_boosted_trees": True,
        "calibrated": True,
        "clean_source": True,
    }
    versus_champion = trained.registry.get(2).metrics["gate"]["comparisons"]["champion"]
    assert versus_champion["low"] <= 0.0 and versus_champion["margin"] == 0.0
    registry = trained.registry
    statuses = {m.version: m.status for m in registry.versions()}
    assert statuses == {1: "champion", 2: "rejected"}
    promoted = [e for e in result.get_asset_materialization_events() if e.asset_key.path[0] == "deployment"]
    assert promoted == []

    # With a shadow policy, a candidate that passes is served in shadow first, and the champion stays.
    params = yaml.safe_load((trained.repo / "params.yaml").read_text())
    params["promotion"] = {"shadow_days": 2, "shadow_margin": 0.005, "shadow_min_flights": 100}
    (trained.repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    shadowed = _chain(trained, {"champion_margin": 1.0})
    assert shadowed.success
    assert {m.version: m.status for m in trained.registry.versions()} == {
        1: "champion",
        2: "rejected",
        3: "shadow",
    }
    (event,) = [e for e in shadowed.get_asset_materialization_events() if e.asset_key == CHAMPION_KEY]
    shown = event.materialization.metadata
    assert (shown["champion_version"].value, shown["shadow_version"].value, shown["trigger"].value) == (
        1,
        3,
        "shadow",
    )


def reproduce_v1(*arguments: str | Path) -> subprocess.CompletedProcess[str]:
    """`python -m ml.reproduce --version 1 ARGUMENTS...` from the project root, as a user runs it."""
    command = [sys.executable, "-m", "ml.reproduce", "--version", "1", *map(str, arguments)]
    return subprocess.run(command, cwd=PROJECT, capture_output=True, text=True, check=False)


def test_reproduce_restores_the_exact_training_set_and_metrics(trained: TrainingPlatform) -> None:
    assert _chain(trained).success
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
    done = reproduce_v1("--lake", trained.root / "lake", "--repo", trained.repo, "--out", out)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "reproduces the snapshot" in done.stdout
    assert "v1 reproduced: same training bytes, same metrics, same model files" in done.stdout
    assert "byte-identical to the registered model md5" in done.stdout
    registered = trained.registry.get(1).metrics["training"]
    again = json.loads((out / "model" / "metrics.json").read_text())
    assert again["validation"] == registered["validation"]
    assert again["calibration"] == registered["calibration"]


def test_a_platform_moved_to_another_folder_reproduces_its_model_there(
    trained: TrainingPlatform, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Neither the snapshot nor the model files name where they live: moved, v1 rebuilds byte for byte.

    Everything (repository, lake, DVC remote) is moved, not copied, so nothing can still
    read the original folder; the manifest used to hold the lake's absolute path, which made
    the re-snapshot's md5 depend on the folder.
    """
    assert _chain(trained).success
    moved = tmp_path_factory.mktemp("elsewhere") / "platform"
    moved.mkdir()
    for child in list(trained.root.iterdir()):
        shutil.move(str(child), str(moved / child.name))
    shutil.rmtree(moved / "repo" / ".dvc" / "cache")
    done = reproduce_v1(
        "--lake",
        moved / "lake",
        "--repo",
        moved / "repo",
        "--dvc-remote",
        moved / "dvc-remote",
        "--out",
        moved / "reproduced",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "reproduces the snapshot" in done.stdout
    assert "byte-identical to the registered model md5" in done.stdout
    manifest = json.loads((moved / "reproduced" / "training_set" / "manifest.json").read_text())
    assert manifest["source"]["feature_table"] == "features/flight_features"
    assert str(trained.root) not in (moved / "reproduced" / "training_set" / "manifest.json").read_text()


# --- a lost training node: Dagster's retry resumes from the last checkpoint -----------------------


class NodeLostOnceLauncher(LocalLauncher):
    """Test launcher: the first attempt's training process is killed after its first checkpoint."""

    def launch(self, context: dg.AssetExecutionContext, request: TrainingRequest) -> dg.MaterializeResult:
        if context.retry_number == 0:
            command = [sys.executable, "-m", "ml.training.train", *request.arguments(), "--device", "cpu"]
            process = subprocess.Popen(
                command, cwd=PROJECT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            checkpoint = Path(request.out) / "checkpoints" / "last.pt"
            deadline = time.monotonic() + 120
            while process.poll() is None and not checkpoint.exists() and time.monotonic() < deadline:
                time.sleep(0.02)
            process.send_signal(signal.SIGKILL)
            process.wait()
            assert process.returncode == -signal.SIGKILL, "training finished before the node was lost"
            raise RuntimeError("training node lost")
        return super().launch(context, request)


def test_a_retried_training_step_resumes_from_its_checkpoint_to_the_uninterrupted_result(
    trained: TrainingPlatform,
) -> None:
    resources = {**trained.resources, "launcher": NodeLostOnceLauncher(cwd=str(PROJECT))}
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        ASSETS, selection=CHAIN[:2], resources=resources, instance=instance, raise_on_error=False
    )
    assert result.success
    retry = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY)
    assert "training node lost" in retry.event_specific_data.error.to_string()  # type: ignore[union-attr]
    logs = [entry.user_message for entry in instance.all_logs(result.run_id)]
    assert any("resumed from checkpoint" in m for m in logs)
    resumed = trained.registry.get(1)

    uninterrupted = trained.root / "uninterrupted"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "ml.training.train",
            "--training-set",
            str(trained.repo / "data" / "training_set"),
            "--out",
            str(uninterrupted),
            "--params",
            str(trained.repo / "params.yaml"),
            "--device",
            "cpu",
        ],
        cwd=PROJECT,
        check=True,
        capture_output=True,
    )
    expected = json.loads((uninterrupted / "metrics.json").read_text())
    assert resumed.metrics["training"]["validation"] == expected["validation"]
    assert resumed.metrics["training"]["calibration"] == expected["calibration"]
    assert resumed.metrics["training"]["best_epoch"] == expected["best_epoch"]


# --- the gate and bad input: clear errors, the champion untouched ----------------------------------


def test_a_first_candidate_worse_than_boosted_trees_is_rejected_and_nothing_is_promoted(
    trained: TrainingPlatform,
) -> None:
    set_training(trained, {"max_epochs": 1, "learning_rate": 1e-7})
    result = _chain(trained, {"baseline_margin": 0.0})
    assert not result.success
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks == {
        "beats_champion": True,
        "beats_boosted_trees": False,
        "calibrated": True,
        "clean_source": True,
    }
    registry = trained.registry
    assert registry.champion() is None
    assert [m.status for m in registry.versions()] == ["rejected"]


def test_a_deleted_champion_artifact_stops_evaluation_and_leaves_the_champion(
    trained: TrainingPlatform,
) -> None:
    assert _chain(trained).success
    champion = trained.registry.champion()
    assert champion is not None
    shutil.rmtree(champion.artifact_uri)
    set_training(trained, {"seed": 1})
    result = _chain(trained)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE)
    assert f"model version {champion.version} points at {champion.artifact_uri}" in str(
        failure.step_failure_data.error
    )
    after = trained.registry
    assert after.champion() is not None and after.champion().version == champion.version  # type: ignore[union-attr]


def test_a_missing_dvc_remote_fails_the_snapshot_and_keeps_the_previous_one_and_the_champion(
    trained: TrainingPlatform,
) -> None:
    assert _chain(trained).success
    lock_before = (trained.repo / "dvc.lock").read_bytes()
    snapshot_before = folder_md5(trained.repo / "data" / "training_set")
    shutil.rmtree(trained.root / "dvc-remote")
    trained.features(day(1), day(14))
    result = _chain(trained)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE)
    assert failure.step_key == "training__training_set"
    assert "DVC remote 'local' is missing" in str(failure.step_failure_data.error)
    assert (trained.repo / "dvc.lock").read_bytes() == lock_before
    assert folder_md5(trained.repo / "data" / "training_set") == snapshot_before
    registry = trained.registry
    assert [(m.version, m.status) for m in registry.versions()] == [(1, "champion")]


# --- a run acts on the model it trained, never on a concurrent run's ------------------------------


def concurrent_registration(after: dg.AssetsDefinition) -> dg.AssetsDefinition:
    """Test asset: another run registers a candidate between `after` and this run's next step.

    Its files are a copy of this run's candidate, and it carries that candidate's metrics (so,
    once evaluated, a passed gate): a model the next step could mistake for its own. The
    `dagster/priority` tag makes the in-process executor run it before the next step.
    """

    @dg.asset(
        key=["tests", f"registered_after_{after.key.path[-1]}"],
        deps=[after],
        op_tags={"dagster/priority": "10"},
    )
    def _register(lake: LakeResource, artifacts: ArtifactsResource) -> None:
        registry = ModelRegistry(lake.store(), artifacts.root)
        mine = registry.latest("candidate")
        assert mine is not None
        folder = Path(mine.artifact_uri).parent / f"concurrent-of-v{mine.version}"
        shutil.copytree(mine.artifact_uri, folder)
        registry.register(
            artifact_uri=str(folder),
            onnx_uri=str(folder / "model.onnx"),
            model_md5=f"concurrent-{mine.model_md5}",
            training_set_md5=mine.training_set_md5,
            feature_table_uri=mine.feature_table_uri,
            feature_table_version=mine.feature_table_version,
            lake_versions=mine.lake_versions,
            git_commit=mine.git_commit,
            params=mine.params,
            metrics=mine.metrics,
            now=dt.datetime.now(dt.UTC),
        )

    return _register


def test_evaluation_and_promotion_act_on_their_runs_model_even_when_a_newer_candidate_exists(
    trained: TrainingPlatform,
) -> None:
    registry = trained.registry
    # A concurrent candidate (v2) lands after this run trained v1: the run must not evaluate v2.
    result = _chain(trained, extra=(concurrent_registration(candidate_model),))
    assert not result.success
    assert (
        "model version 1, trained by this run, is superseded (superseded by v2 before evaluation)"
        in (failures(result)["training__evaluation"])
    )
    assert {m.version: m.status for m in registry.versions()} == {1: "superseded", 2: "candidate"}
    assert "gate" not in registry.get(2).metrics

    # This run trains v3 and evaluates it; a concurrent, evaluated v4 lands before promotion.
    result = _chain(trained, selection=CHAIN[1:], extra=(concurrent_registration(evaluation),))
    assert not result.success
    events = {e.asset_key.to_user_string(): e for e in result.get_asset_materialization_events()}
    assert events["training/evaluation"].materialization.metadata["candidate_version"].value == 3
    assert (
        "model version 3, trained by this run, is superseded (superseded by v4 before promotion)"
        in (failures(result)["deployment__champion_model"])
    )
    assert registry.champion() is None and registry.get(4).status == "candidate"

    # Evaluation and promotion alone (from the UI): no model trained in the run, so the newest candidate.
    instance = dg.DagsterInstance.ephemeral()
    result = _chain(trained, selection=CHAIN[2:], instance=instance)
    assert result.success
    logs = [entry.user_message for entry in instance.all_logs(result.run_id)]
    assert any("trained no candidate_model; evaluated the newest candidate v4" in m for m in logs)
    assert any("trained no candidate_model; promoting the newest candidate v4" in m for m in logs)
    assert registry.champion().version == 4  # type: ignore[union-attr]


# --- an operator's freeze: the gate still runs, promotion waits ------------------------------------


def test_a_freeze_holds_a_passed_candidate_until_the_operator_unfreezes_and_promotes_it(
    trained: TrainingPlatform, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = trained.registry
    registry.freeze("holiday change freeze", now=dt.datetime.now(dt.UTC), by="ops")
    instance = dg.DagsterInstance.ephemeral()
    result = _chain(trained, instance=instance)
    assert not result.success
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks == {
        "beats_champion": True,
        "beats_boosted_trees": True,
        "calibrated": True,
        "clean_source": True,
    }
    events = {e.asset_key.to_user_string(): e for e in result.get_asset_materialization_events()}
    assert events["training/evaluation"].materialization.metadata["promotions_frozen"].value is True
    error = failures(result)["deployment__champion_model"]
    assert "promotions are frozen since" in error and "by ops: holiday change freeze" in error
    assert "python -m ml.registry.cli unfreeze" in error and "python -m ml.registry.cli promote 1" in error
    assert [(m.version, m.status) for m in registry.versions()] == [(1, "candidate")]
    assert instance.get_latest_materialization_event(CHAMPION_KEY) is None

    # The operator does what the message says; the champion's page then catches up.
    where = ["--lake", str(trained.root / "lake"), "--artifacts", str(trained.root / "models")]
    assert registry_cli([*where, "unfreeze"]) == 0
    assert registry_cli([*where, "promote", "1", "--reason", "after the holidays"]) == 0
    capsys.readouterr()
    assert registry.champion().version == 1  # type: ignore[union-attr]
    tick = champion_sync(
        dg.build_sensor_context(
            instance=instance, resources={"lake": LakeResource(root=str(trained.root / "lake"))}
        )
    )
    assert isinstance(tick, dg.SensorResult) and tick.asset_events
    shown = {k: v.value for k, v in tick.asset_events[0].metadata.items()}
    assert (shown["champion_version"], shown["previous_champion"]) == (1, None)
    assert (shown["reason"], shown["promotions_frozen"]) == ("after the holidays", False)
