"""Train the delay network on a training-set snapshot and write the model files.

    python -m ml.training.train --training-set data/training_set --out data/model --params params.yaml

The same command runs standalone (`dvc repro train`, a shell) and under Dagster: when
Dagster launches it through Pipes it logs and reports through `dagster_pipes`, the
only Dagster package it imports, so the training image needs no orchestrator.

Memory does not grow with the training set: the preprocessor is fitted on the train split one
Parquet batch at a time, both splits are encoded once into compact arrays (in memory or in files,
by size against a memory budget: `ml.training.encoded`), and every epoch streams its batches from
them a shuffled window at a time (`ml.training.stream`); evaluation is batched too.

A lost machine costs at most one epoch: every epoch ends with an atomic checkpoint,
and a rerun with the same training set and parameters resumes from it. Each epoch's
randomness depends only on (seed, epoch), so a resumed run ends with exactly the
weights of an uninterrupted one (on the same device and thread count).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import torch
from dagster_pipes import PipesEnvVarParamsLoader, open_dagster_pipes

from ml.registry.artifacts import TIMINGS
from ml.registry.provenance import params_hash
from ml.training.encoded import DEFAULT_MEMORY_BUDGET, Placement, parquet_rows, parse_budget
from ml.training.loop import calibrate, evaluate, train_epoch
from ml.training.model import ModelConfig, ProbabilityModel, TabularNet
from ml.training.onnx_model import OnnxModel
from ml.training.params import load_params
from ml.training.preprocess import Preprocessor
from ml.training.probe import LABEL, PROBE_FILE, RECORDED, build_probe, probe_scores, write_probe
from ml.training.progress import (
    ConsoleReporter,
    PipesReporter,
    Reporter,
    device_name,
    materialization_metadata,
)
from ml.training.stream import Layout, SplitStream, steps_per_epoch, streamed_splits
from ml.training.trainer import (
    CHECKPOINT,
    Progress,
    Trainer,
    TrainingError,
    TrainParams,
    build_trainer,
    cpu_state,
    save_checkpoint,
    start_or_resume,
)
from ml.training.training_set import TrainingSetError, folder_md5, read_manifest

EXIT_ERROR = 2
SELECTION = {
    "early_stopping": "validation",
    "calibration": "validation",
}
"""What each choice of a training run was made on: the test split is never read here, only by the gate."""
TRAINING_SPLITS = ("train", "validation")
RUN_FACTS = ("seconds", "samples_per_second", "data")
"""Per-epoch facts of the run, not of the model (its clock, and where the encoded splits lived):
they go to `TIMINGS`, outside the pinned model."""
BUDGET_ENV = "TRAIN_MEMORY_BUDGET"
ONNX_OPSET = 17


# --- data -------------------------------------------------------------------------------


def read_training_set(folder: Path) -> tuple[dict[str, Any], dict[str, Path]]:
    """The manifest and the train and validation files, or a TrainingError saying which is missing or empty.

    Only the files' footers are read here: the rows are streamed later. The test split is not
    even opened: it belongs to the gate, and a number seen here could end up steering a choice.
    """
    if not folder.is_dir():
        raise TrainingError(f"training set folder {folder} does not exist")
    if not any(folder.iterdir()):
        raise TrainingError(
            f"training set folder {folder} is empty (materialize training/training_set first)"
        )
    try:
        manifest = read_manifest(folder)
    except TrainingSetError as exc:
        raise TrainingError(str(exc)) from exc
    paths = {name: folder / f"{name}.parquet" for name in TRAINING_SPLITS}
    rows = {}
    for name, path in paths.items():
        if not path.exists():
            raise TrainingError(f"training set {folder} has no {name} split ({path} is missing)")
        try:
            rows[name] = parquet_rows(path)
        except (OSError, ValueError) as exc:
            raise TrainingError(f"the {name} split {path} is not a readable Parquet file ({exc})") from exc
        if rows[name] == 0:
            raise TrainingError(f"the {name} split of {folder} has no rows")
    if rows["train"] < 2:
        raise TrainingError(f"the train split of {folder} has 1 row; batch normalization needs at least 2")
    return manifest, paths


# --- the run ----------------------------------------------------------------------------


def pick_device(choice: str) -> torch.device:
    if choice == "cuda" and not torch.cuda.is_available():
        raise TrainingError("--device cuda was asked for, but CUDA is not available")
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(choice)


def fit(
    trainer: Trainer,
    params: TrainParams,
    splits: dict[str, SplitStream],
    placement: Placement,
    progress: Progress,
    save: Callable[[Progress], None],
    report: Callable[[str], None],
) -> Progress:
    """Epochs until max_epochs or `patience` epochs without a better validation loss."""
    train, validation = splits["train"], splits["validation"]
    while not progress.done(params):
        epoch = progress.epoch + 1
        torch.manual_seed(params.seed + epoch)
        started = time.perf_counter()
        train_loss = train_epoch(trainer, train, params.batch_size, params.seed, epoch)
        if trainer.device.type == "cuda":
            torch.cuda.synchronize(trainer.device)
        train_seconds = time.perf_counter() - started
        scores = evaluate(trainer.model, validation, trainer.amp, "validation")
        progress.epoch = epoch
        if scores["log_loss"] < progress.best_loss:
            progress.best_loss, progress.best_epoch, progress.bad_epochs = scores["log_loss"], epoch, 0
            progress.best_state = cpu_state(trainer.model)
        else:
            progress.bad_epochs += 1
        record = {
            "epoch": epoch,
            "train_loss": train_loss,
            "validation_loss": scores["log_loss"],
            "validation_auc": scores["roc_auc"],
            "seconds": time.perf_counter() - started,
            "samples_per_second": train.rows / train_seconds,
            "data": placement.where,
        }
        progress.history.append(record)
        save(progress)
        report(
            f"epoch {epoch}/{params.max_epochs} train_loss {train_loss:.4f} "
            f"validation_loss {scores['log_loss']:.4f} validation_auc {scores['roc_auc']:.4f} "
            f"{record['seconds']:.1f}s {record['samples_per_second']:,.0f} samples/s"
            + (" *" if progress.best_epoch == epoch else "")
        )
    if progress.bad_epochs >= params.patience:
        report(
            f"early stop after epoch {progress.epoch}: no better validation loss for {params.patience} epochs"
        )
    return progress


def write_outputs(
    out: Path,
    model: TabularNet,
    preprocessor: Preprocessor,
    metrics: dict[str, Any],
    history: list[dict[str, Any]],
    validation: Path,
    label: str,
) -> None:
    """Every file goes through a temporary name, so a reader never sees a half-written model.

    The probe (`ml.training.probe`) is scored by the exported graph itself, once model.onnx and
    preprocess.json are in place, on one onnxruntime thread: what the server will compare against
    is what onnxruntime answers, not the torch model under mixed precision. Its scores go into
    metrics.json, hence into the registry row, beside the md5 of its file. Its rows are picked from
    the validation file by a lazy scan, so the split is not loaded whole for them either.
    """
    model = model.cpu().eval()
    _replace(out / "model.pt", lambda p: torch.save(model.state_dict(), p))
    _replace(out / "model.json", lambda p: p.write_text(json.dumps(model.config.to_dict(), indent=2) + "\n"))
    _replace(out / "preprocess.json", lambda p: p.write_text(preprocessor.to_json()))
    _replace(out / "model.onnx", lambda p: export_onnx(model, p))
    probe = build_probe(pl.scan_parquet(validation), label, OnnxModel(out, threads=1))
    _replace(out / PROBE_FILE, lambda p: write_probe(probe, p))
    metrics = {**metrics, "probe": probe_scores(probe[LABEL].to_numpy(), probe[RECORDED].to_numpy())}
    _replace(
        out / "metrics.json", lambda p: p.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    )
    learned = [{k: v for k, v in row.items() if k not in RUN_FACTS} for row in history]
    timings = [{k: row[k] for k in ("epoch", *RUN_FACTS) if k in row} for row in history]
    _replace(out / "history.json", lambda p: p.write_text(json.dumps(learned, indent=2) + "\n"))
    _replace(out / TIMINGS, lambda p: p.write_text(json.dumps(timings, indent=2) + "\n"))


def export_onnx(model: TabularNet, path: Path) -> None:
    """Probabilities, not logits, with a free batch axis: what the model server feeds rows to."""
    config = model.config
    example = (
        torch.zeros((2, len(config.cardinalities)), dtype=torch.int64),
        torch.zeros((2, config.numeric_width), dtype=torch.float32),
    )
    with warnings.catch_warnings():
        # dynamo=False is deliberate (the TorchScript exporter is the one checked here); skip its notice.
        warnings.filterwarnings("ignore", message="You are using the legacy TorchScript-based ONNX export")
        torch.onnx.export(
            ProbabilityModel(model).eval(),
            example,
            str(path),
            input_names=["categorical", "numeric"],
            output_names=["probability"],
            dynamic_axes={"categorical": {0: "batch"}, "numeric": {0: "batch"}, "probability": {0: "batch"}},
            opset_version=ONNX_OPSET,
            dynamo=False,
        )


def _replace(path: Path, write: Callable[[Path], object]) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    write(temporary)
    temporary.replace(path)


def run(
    training_set: Path,
    out: Path,
    params_file: Path,
    device_choice: str,
    reporter: Reporter,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    layout: Layout | None = None,
) -> dict[str, Any]:
    """Train (or resume), write the outputs, report; returns the metrics.

    `memory_budget` decides only where the encoded splits live (`ml.training.encoded.place`), never
    the model: both places stream the same batches.
    """
    try:
        section = load_params(params_file).get("train")
    except (FileNotFoundError, ValueError) as exc:
        raise TrainingError(str(exc)) from exc
    if not isinstance(section, dict):
        raise TrainingError(f"params file {params_file} has no train: section")
    params = TrainParams.from_section(section)
    manifest, paths = read_training_set(training_set)
    device = pick_device(device_choice)
    out.mkdir(parents=True, exist_ok=True)
    torch.use_deterministic_algorithms(device.type == "cpu")
    fingerprint = {"training_set_md5": folder_md5(training_set), "params_hash": params_hash(section)}
    checkpoint = out / CHECKPOINT

    with streamed_splits(paths, manifest, device, memory_budget, layout, reporter.info) as prepared:
        preprocessor, placement, splits = prepared
        config = ModelConfig(
            cardinalities=tuple(preprocessor.cardinalities),
            numeric_width=preprocessor.numeric_width,
            embedding_dim=params.embedding_dim,
            hidden_sizes=params.hidden_sizes,
            dropout=params.dropout,
        )
        trainer = build_trainer(
            config, params, steps_per_epoch(splits["train"].rows, params.batch_size), device
        )
        reporter.info(
            f"training on {device_name(device)}: {splits['train'].rows} train rows, "
            f"{splits['validation'].rows} validation rows, up to {params.max_epochs} epochs"
        )
        progress = start_or_resume(checkpoint, fingerprint, trainer, reporter.info)
        progress = fit(
            trainer,
            params,
            splits,
            placement,
            progress,
            lambda p: save_checkpoint(checkpoint, fingerprint, trainer, p),
            reporter.info,
        )
        trainer.model.load_state_dict(progress.best_state)
        metrics = {
            **calibrate(trainer.model, splits["validation"], trainer.amp),
            "best_epoch": progress.best_epoch,
            "epochs_run": progress.epoch,
            "selection": SELECTION,
        }
    write_outputs(
        out, trainer.model, preprocessor, metrics, progress.history, paths["validation"], manifest["label"]
    )
    reporter.materialized(materialization_metadata(out, device, metrics, progress.history, fingerprint))
    return metrics


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m ml.training.train",
        description=(
            "Train the flight-delay network on a training-set snapshot. Writes model.pt (state dict), "
            "model.json (architecture), preprocess.json, model.onnx, probe.parquet (validation rows with the "
            "exported model's answers, which the server checks before serving it), metrics.json, "
            "history.json (per-epoch losses) "
            "and timings.json (per-epoch seconds, not part of the pinned model) to OUT, "
            "and checkpoints every epoch to OUT/checkpoints/last.pt; rerunning with the same training set "
            "and train params resumes from that checkpoint. Under Dagster Pipes it logs and reports "
            "through Pipes; otherwise it prints progress."
        ),
    )
    parser.add_argument(
        "--training-set",
        required=True,
        type=Path,
        metavar="DIR",
        help="snapshot folder with train/validation/test parquet files and manifest.json",
    )
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="folder for the model files")
    parser.add_argument(
        "--params",
        default=Path("params.yaml"),
        type=Path,
        metavar="FILE",
        help="YAML file with a train: section (default: params.yaml)",
    )
    parser.add_argument(
        "--device",
        default="auto",
        choices=("auto", "cpu", "cuda"),
        help="auto: CUDA with mixed precision when available, else CPU float32",
    )
    parser.add_argument(
        "--memory-budget",
        default=None,
        metavar="SIZE",
        help=(
            f"memory the run may use, e.g. 4GiB (default: ${BUDGET_ENV}, else 4GiB). The splits are "
            "encoded once; they stay in memory as model inputs when that takes at most half the budget "
            "(268 bytes a row), else they go to unnamed files under TMPDIR (133 bytes a row), freed when "
            "the run ends, and batches stream "
            "from them a window at a time. Either way the batches, hence the model, are the same; "
            "timings.json records which"
        ),
    )
    return parser.parse_args(argv)


def memory_budget(flag: str | None, environment: dict[str, str]) -> int:
    """The --memory-budget flag, else the environment variable, else the default."""
    text = flag or environment.get(BUDGET_ENV)
    try:
        return DEFAULT_MEMORY_BUDGET if text is None else parse_budget(text)
    except ValueError as exc:
        raise TrainingError(str(exc)) from exc


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        budget = memory_budget(args.memory_budget, dict(os.environ))
        if PipesEnvVarParamsLoader().is_dagster_pipes_process():
            with open_dagster_pipes() as context:
                run(args.training_set, args.out, args.params, args.device, PipesReporter(context), budget)
        else:
            run(args.training_set, args.out, args.params, args.device, ConsoleReporter(), budget)
    except TrainingError as exc:
        print(f"ml.training.train: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main())
