"""The training entrypoint: outputs, determinism, resuming after a kill, and its failures."""

import datetime as dt
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import torch
import yaml

from ml.lake.tables import FEATURES_TABLE
from ml.registry.artifacts import TIMINGS, UNPINNED
from ml.training import train
from ml.training.model import ModelConfig, TabularNet
from ml.training.training_set import SplitSizes, split_by_time, write_snapshot
from tests.conftest import Platform, day, module_help

ROOT = Path(__file__).resolve().parents[2]
FIRST, LAST = day(1), day(21)
SMALL = {
    "seed": 0,
    "batch_size": 512,
    "max_epochs": 3,
    "patience": 3,
    "learning_rate": 0.003,
    "weight_decay": 0.01,
    "embedding_dim": 4,
    "hidden_sizes": [32, 16],
    "dropout": 0.1,
}
OUTPUTS = {
    "model.pt",
    "model.json",
    "preprocess.json",
    "model.onnx",
    "probe.parquet",
    "metrics.json",
    "history.json",
    "timings.json",
}


def build_snapshot(root: Path, landing: Path, first: dt.date = FIRST, last: dt.date = LAST) -> Path:
    """Three weeks of real January features, split 13/4/4 days, written as a snapshot."""
    shutil.copytree(landing, root / "landing")
    platform = Platform(root)
    platform.reference()
    platform.bronze(first, last)
    platform.features(first, last)
    parts = split_by_time(platform.store.read(FEATURES_TABLE), last, SplitSizes(4, 4))
    folder = root / "training_set"
    write_snapshot(parts, folder, {"feature_table": "test", "feature_table_version": 0}, last)
    return folder


def write_params(path: Path, **overrides: object) -> Path:
    path.write_text(yaml.safe_dump({"train": {**SMALL, **overrides}}))
    return path


def command(snapshot: Path, out: Path, params: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "ml.training.train",
        "--training-set",
        str(snapshot),
        "--out",
        str(out),
        "--params",
        str(params),
    ]


def weights(out: Path) -> dict[str, torch.Tensor]:
    return torch.load(out / "model.pt", weights_only=True)


def assert_same_weights(a: Path, b: Path) -> None:
    left, right = weights(a), weights(b)
    assert left.keys() == right.keys()
    for key in left:
        assert torch.equal(left[key], right[key]), key


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory: pytest.TempPathFactory, replayed_landing: Path) -> Path:
    return build_snapshot(tmp_path_factory.mktemp("small_snapshot"), replayed_landing)


@pytest.fixture
def params(tmp_path: Path) -> Path:
    return write_params(tmp_path / "params.yaml")


def test_help_runs_as_a_subprocess() -> None:
    shown = module_help("ml.training.train")
    for option in ("--training-set", "--out", "--params", "--device", "resumes"):
        assert option in shown


def test_standalone_training_writes_every_output(
    snapshot: Path, params: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "model"
    assert train.main(["--training-set", str(snapshot), "--out", str(out), "--params", str(params)]) == 0
    printed = capsys.readouterr().out
    assert printed.count("epoch ") >= 3 and "samples/s" in printed

    assert {p.name for p in out.iterdir()} >= OUTPUTS
    assert (out / "checkpoints" / "last.pt").exists()
    metrics = json.loads((out / "metrics.json").read_text())
    manifest = json.loads((snapshot / "manifest.json").read_text())
    assert "test" not in metrics, "the test split belongs to the gate"
    assert metrics["selection"] == {"early_stopping": "validation", "calibration": "validation"}
    validation = metrics["validation"]
    assert validation["rows"] == manifest["splits"]["validation"]["rows"]
    assert 0.55 < validation["roc_auc"] <= 1.0
    assert 0.0 < validation["log_loss"] < 0.69  # better than a coin
    calibration = metrics["calibration"]
    assert calibration["method"] == "temperature" and 0.05 < calibration["temperature"] < 20
    assert validation["log_loss"] <= calibration["validation_log_loss_before"] + 1e-9
    assert metrics["epochs_run"] == 3 and 1 <= metrics["best_epoch"] <= 3
    history = json.loads((out / "history.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2, 3]
    for row in history:
        assert set(row) == {"epoch", "train_loss", "validation_loss", "validation_auc"}  # no clock in it
    timings = json.loads((out / "timings.json").read_text())
    assert [row["epoch"] for row in timings] == [1, 2, 3]
    assert all(row["samples_per_second"] > 0 and row["seconds"] > 0 for row in timings)
    net = TabularNet(ModelConfig.from_dict(json.loads((out / "model.json").read_text())))
    net.load_state_dict(weights(out))  # strict: model.json rebuilds exactly the saved architecture


def test_training_never_reads_the_test_split(snapshot: Path, params: Path, tmp_path: Path) -> None:
    """The test split belongs to the gate: garbage in its place changes nothing for training."""
    blind = tmp_path / "blind"
    shutil.copytree(snapshot, blind)
    (blind / "test.parquet").write_bytes(b"not parquet: training must not open it")
    out = tmp_path / "model"
    assert train.main(["--training-set", str(blind), "--out", str(out), "--params", str(params)]) == 0
    assert "test" not in json.loads((out / "metrics.json").read_text())


def test_same_seed_gives_identical_weights_and_another_seed_does_not(snapshot: Path, tmp_path: Path) -> None:
    runs = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        out = tmp_path / name
        params_file = write_params(tmp_path / f"{name}.yaml", seed=seed, max_epochs=2)
        assert (
            train.main(["--training-set", str(snapshot), "--out", str(out), "--params", str(params_file)])
            == 0
        )
        runs[name] = out
    assert_same_weights(runs["a"], runs["b"])
    # Every file DVC pins is the same bytes, so a retraining gives the registered model md5 again;
    # only the clock's record differs.
    pinned = sorted(p.name for p in runs["a"].iterdir() if p.is_file() and p.name not in UNPINNED)
    assert set(pinned) == OUTPUTS - {TIMINGS}
    for name in pinned:
        assert (runs["a"] / name).read_bytes() == (runs["b"] / name).read_bytes(), name
    assert not all(torch.equal(weights(runs["a"])[k], weights(runs["c"])[k]) for k in weights(runs["a"]))


def test_a_killed_run_resumes_to_the_uninterrupted_result(snapshot: Path, tmp_path: Path) -> None:
    # Small batches and no early stop: enough epochs that the kill lands in the middle.
    params_file = write_params(tmp_path / "params.yaml", batch_size=64, max_epochs=12, patience=12)
    killed, reference = tmp_path / "killed", tmp_path / "reference"
    checkpoint = killed / "checkpoints" / "last.pt"

    process = subprocess.Popen(
        command(snapshot, killed, params_file), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    # Killed once two epochs are checkpointed, however long a busy machine takes to get there;
    # the deadline only ends a hung process (epochs take about a second each when idle).
    epoch, deadline = 0, time.monotonic() + 420
    while epoch < 2 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
        if checkpoint.exists():
            epoch = torch.load(checkpoint, weights_only=True)["progress"]["epoch"]
    assert epoch >= 2 or process.poll() is not None, "no second epoch within 420 s: the training hangs"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "training finished before it could be killed"
    at_kill = torch.load(checkpoint, weights_only=True)["progress"]["epoch"]
    assert 2 <= at_kill < 12
    assert not (killed / "metrics.json").exists()

    resumed = subprocess.run(
        command(snapshot, killed, params_file), cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed from checkpoint {checkpoint} at epoch {at_kill}" in resumed.stdout
    assert resumed.stdout.count("epoch ") - 1 == 12 - at_kill  # only the missing epochs ran

    assert train.main(command(snapshot, reference, params_file)[3:]) == 0
    assert_same_weights(killed, reference)
    assert (killed / "metrics.json").read_text() == (reference / "metrics.json").read_text()


def test_a_corrupted_checkpoint_is_a_clear_error_and_stays(
    snapshot: Path, params: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "model"
    checkpoint = out / "checkpoints" / "last.pt"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(b"half a checkpoint")
    assert (
        train.main(["--training-set", str(snapshot), "--out", str(out), "--params", str(params)])
        == train.EXIT_ERROR
    )
    error = capsys.readouterr().err
    assert str(checkpoint) in error and "delete it" in error
    assert checkpoint.read_bytes() == b"half a checkpoint"
    assert not (out / "model.pt").exists()


def test_a_checkpoint_of_other_params_is_replaced_by_a_fresh_run(
    snapshot: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, fresh = tmp_path / "model", tmp_path / "fresh"
    first = write_params(tmp_path / "first.yaml", max_epochs=2)
    second = write_params(tmp_path / "second.yaml", max_epochs=2, learning_rate=0.001)
    assert train.main(["--training-set", str(snapshot), "--out", str(out), "--params", str(first)]) == 0
    capsys.readouterr()
    assert train.main(["--training-set", str(snapshot), "--out", str(out), "--params", str(second)]) == 0
    printed = capsys.readouterr().out
    assert "starting fresh" in printed and "resumed" not in printed
    assert [row["epoch"] for row in json.loads((out / "history.json").read_text())] == [1, 2]
    assert train.main(["--training-set", str(snapshot), "--out", str(fresh), "--params", str(second)]) == 0
    assert_same_weights(out, fresh)


def test_missing_empty_or_incomplete_training_sets_fail_clearly(
    snapshot: Path, params: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    no_validation = tmp_path / "no_validation"
    shutil.copytree(snapshot, no_validation)
    pl.read_parquet(snapshot / "validation.parquet").head(0).write_parquet(
        no_validation / "validation.parquet"
    )
    cases = {tmp_path / "absent": "does not exist", empty: "is empty", no_validation: "validation split"}
    for folder, message in cases.items():
        code = train.main(
            ["--training-set", str(folder), "--out", str(tmp_path / "out"), "--params", str(params)]
        )
        assert code == train.EXIT_ERROR
        error = capsys.readouterr().err
        assert message in error and str(folder) in error
    assert not (tmp_path / "out").exists()


def test_under_pipes_it_logs_each_epoch_and_reports_the_materialization(
    snapshot: Path, params: Path, tmp_path: Path
) -> None:
    out = tmp_path / "model"

    @dg.asset
    def candidate(context: dg.AssetExecutionContext, pipes: dg.PipesSubprocessClient) -> dg.MaterializeResult:
        return pipes.run(context=context, command=command(snapshot, out, params)).get_materialize_result()

    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        [candidate], resources={"pipes": dg.PipesSubprocessClient(cwd=str(ROOT))}, instance=instance
    )
    metadata = result.asset_materializations_for_node("candidate")[0].metadata
    assert metadata["device"].value == "cpu"
    assert metadata["epochs_run"].value == 3
    assert [row["epoch"] for row in metadata["epoch_losses"].value] == [1, 2, 3]
    assert metadata["samples_per_second"].value > 0
    assert metadata["output_folder"].value == str(out)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metadata["validation_roc_auc"].value == metrics["validation"]["roc_auc"]
    assert metadata["temperature"].value == metrics["calibration"]["temperature"]
    logged = [e.user_message for e in instance.all_logs(result.run_id) if "validation_loss" in e.user_message]
    assert len(logged) == 3, "one log line per epoch should come back through Pipes"
