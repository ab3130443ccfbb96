"""Train the delay network on a training-set snapshot and write the model files.

    python -m ml.train --training-set data/training_set --out data/model --params params.yaml

The same command runs standalone (`dvc repro train`, a shell) and under Dagster: when
Dagster launches it through Pipes it logs and reports through `dagster_pipes`, the
only Dagster package it imports, so the training image needs no orchestrator.

A lost machine costs at most one epoch: every epoch ends with an atomic checkpoint,
and a rerun with the same training set and parameters resumes from it. Each epoch's
randomness depends only on (seed, epoch), so a resumed run ends with exactly the
weights of an uninterrupted one (on the same device and thread count).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import polars as pl
import torch
from dagster_pipes import PipesContext, PipesEnvVarParamsLoader, open_dagster_pipes
from torch.nn import functional

from ml.lineage import params_hash
from ml.metrics import binary_metrics, label_values
from ml.model import ModelConfig, ProbabilityModel, TabularNet
from ml.params import load_params
from ml.preprocess import Preprocessor
from ml.training_set import SPLITS, TrainingSetError, folder_md5, read_manifest, read_split

EXIT_ERROR = 2
CHECKPOINT = Path("checkpoints") / "last.pt"
CHECKPOINT_FORMAT = 1
EVAL_BATCH = 65536
ONNX_OPSET = 17


class TrainingError(Exception):
    """A problem the user must fix (bad input, bad params, unreadable checkpoint): one clear message."""


@dataclass(frozen=True)
class TrainParams:
    """The `train:` section of params.yaml; its hash is part of the checkpoint fingerprint."""

    seed: int
    batch_size: int
    max_epochs: int
    patience: int
    learning_rate: float
    weight_decay: float
    embedding_dim: int
    hidden_sizes: tuple[int, ...]
    dropout: float

    @classmethod
    def from_section(cls, section: Mapping[str, Any]) -> TrainParams:
        missing = [name for name in cls.__dataclass_fields__ if name not in section]
        if missing:
            raise TrainingError(f"params.yaml train: section lacks {', '.join(missing)}")
        try:
            params = cls(
                seed=int(section["seed"]),
                batch_size=int(section["batch_size"]),
                max_epochs=int(section["max_epochs"]),
                patience=int(section["patience"]),
                learning_rate=float(section["learning_rate"]),
                weight_decay=float(section["weight_decay"]),
                embedding_dim=int(section["embedding_dim"]),
                hidden_sizes=tuple(int(h) for h in section["hidden_sizes"]),
                dropout=float(section["dropout"]),
            )
        except (TypeError, ValueError) as exc:
            raise TrainingError(f"params.yaml train: section has a value of the wrong type ({exc})") from exc
        if min(params.batch_size, params.max_epochs, params.patience, params.embedding_dim) < 1:
            raise TrainingError(
                "params.yaml train: batch_size, max_epochs, patience, embedding_dim must be >= 1"
            )
        if not 0.0 <= params.dropout < 1.0 or params.learning_rate <= 0 or params.weight_decay < 0:
            raise TrainingError(
                "params.yaml train: need 0 <= dropout < 1, learning_rate > 0, weight_decay >= 0"
            )
        return params


# --- data -------------------------------------------------------------------------------


@dataclass
class Split:
    """One split as tensors on the training device: batches are slices of these, not a DataLoader."""

    name: str
    categorical: torch.Tensor
    numeric: torch.Tensor
    label: torch.Tensor

    @property
    def rows(self) -> int:
        return int(self.label.shape[0])


def read_training_set(folder: Path) -> tuple[dict[str, Any], dict[str, pl.DataFrame]]:
    """The manifest and the three splits, or a TrainingError saying which is missing or empty."""
    if not folder.is_dir():
        raise TrainingError(f"training set folder {folder} does not exist")
    if not any(folder.iterdir()):
        raise TrainingError(
            f"training set folder {folder} is empty (materialize training/training_set first)"
        )
    try:
        manifest = read_manifest(folder)
        frames = {name: read_split(folder, name) for name in SPLITS}
    except TrainingSetError as exc:
        raise TrainingError(str(exc)) from exc
    for name, frame in frames.items():
        if frame.is_empty():
            raise TrainingError(f"the {name} split of {folder} has no rows")
    if frames["train"].height < 2:
        raise TrainingError(f"the train split of {folder} has 1 row; batch normalization needs at least 2")
    return manifest, frames


def to_split(
    name: str, frame: pl.DataFrame, preprocessor: Preprocessor, label: str, device: torch.device
) -> Split:
    codes, numbers = preprocessor.transform(frame)
    y = label_values(frame, label).astype(np.float32)
    return Split(
        name,
        torch.from_numpy(codes).to(device),
        torch.from_numpy(numbers).to(device),
        torch.from_numpy(y).to(device),
    )


# --- one epoch and evaluation -----------------------------------------------------------


@dataclass
class Trainer:
    """Model, optimizer, schedule and loss scaler: everything a checkpoint must restore."""

    model: TabularNet
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    device: torch.device

    @property
    def amp(self) -> bool:
        return self.device.type == "cuda"


def build_trainer(
    config: ModelConfig, params: TrainParams, steps_per_epoch: int, device: torch.device
) -> Trainer:
    """Seeded initial weights; a one-cycle schedule, so a short run still ends on a small learning rate."""
    torch.manual_seed(params.seed)
    model = TabularNet(config).to(device)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=params.learning_rate, weight_decay=params.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=params.learning_rate,
        total_steps=params.max_epochs * steps_per_epoch,
        pct_start=0.1,
    )
    scaler = torch.amp.GradScaler(device.type, enabled=device.type == "cuda")
    return Trainer(model, optimizer, scheduler, scaler, device)


def steps_per_epoch(rows: int, batch_size: int) -> int:
    return math.ceil(rows / batch_size)


def epoch_order(rows: int, seed: int, epoch: int) -> torch.Tensor:
    """The row order of an epoch, from its own generator: the same for an epoch whether resumed or not."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(rows, generator=generator)


def train_epoch(trainer: Trainer, train: Split, batch_size: int, order: torch.Tensor) -> float:
    """One pass over `train` in the given order; returns the mean training loss.

    Batches are near-equal slices (`tensor_split`), so no batch is a lone row that
    batch normalization cannot train on. The loss is summed on the device and read
    once, so a GPU never waits on the host inside the loop.
    """
    model, optimizer, scaler = trainer.model, trainer.optimizer, trainer.scaler
    model.train()
    total = torch.zeros((), device=trainer.device)
    for index in order.to(trainer.device).tensor_split(steps_per_epoch(train.rows, batch_size)):
        with torch.autocast(trainer.device.type, enabled=trainer.amp):
            logits = model(train.categorical[index], train.numeric[index])
        loss = functional.binary_cross_entropy_with_logits(logits.float(), train.label[index])
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        trainer.scheduler.step()
        total += loss.detach() * index.numel()
    return float(total) / train.rows


@torch.no_grad()
def predict(model: TabularNet, split: Split, amp: bool) -> np.ndarray:
    """Delay probabilities (float64) of a split, in large evaluation batches."""
    model.eval()
    parts = []
    for start in range(0, split.rows, EVAL_BATCH):
        end = start + EVAL_BATCH
        with torch.autocast(split.label.device.type, enabled=amp):
            logits = model(split.categorical[start:end], split.numeric[start:end])
        parts.append(torch.sigmoid(logits.float()).cpu().numpy())
    return np.concatenate(parts).astype(np.float64)


def evaluate(model: TabularNet, split: Split, amp: bool) -> dict[str, float]:
    try:
        return binary_metrics(split.label.cpu().numpy(), predict(model, split, amp))
    except ValueError as exc:
        raise TrainingError(f"cannot evaluate the {split.name} split: {exc}") from exc


# --- checkpoints ------------------------------------------------------------------------


@dataclass
class Progress:
    """What early stopping and the reports need besides the trainer's own state."""

    epoch: int = 0
    best_epoch: int = 0
    best_loss: float = math.inf
    best_state: dict[str, torch.Tensor] = field(default_factory=dict)
    bad_epochs: int = 0
    history: list[dict[str, float]] = field(default_factory=list)

    def done(self, params: TrainParams) -> bool:
        return self.epoch >= params.max_epochs or self.bad_epochs >= params.patience

    def to_state(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "best_epoch": self.best_epoch,
            "best_loss": self.best_loss,
            "best_state": self.best_state,
            "bad_epochs": self.bad_epochs,
            "history": self.history,
        }


def cpu_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.detach().cpu().clone() for key, value in module.state_dict().items()}


def save_checkpoint(path: Path, fingerprint: dict[str, str], trainer: Trainer, progress: Progress) -> None:
    """Write to a temporary file, fsync, then rename: a kill leaves the old or the new file, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "format": CHECKPOINT_FORMAT,
        "fingerprint": fingerprint,
        "model": trainer.model.state_dict(),
        "optimizer": trainer.optimizer.state_dict(),
        "scheduler": trainer.scheduler.state_dict(),
        "scaler": trainer.scaler.state_dict(),
        "progress": progress.to_state(),
    }
    temporary = path.with_name(path.name + ".tmp")
    with temporary.open("wb") as handle:
        torch.save(state, handle)
        handle.flush()
        os.fsync(handle.fileno())
    temporary.replace(path)


def read_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint's contents (tensors and plain values only: `weights_only=True` runs no pickled code)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"format {state.get('format')!r}, expected {CHECKPOINT_FORMAT}")
        missing = {"fingerprint", "model", "optimizer", "scheduler", "scaler", "progress"} - set(state)
        if missing:
            raise ValueError(f"missing {', '.join(sorted(missing))}")
    except Exception as exc:
        raise TrainingError(
            f"checkpoint {path} cannot be read ({type(exc).__name__}: {exc}). It was left as it is; "
            f"delete it (rm {path}) to train from the first epoch, or restore a good copy to resume."
        ) from exc
    return state


def restore(path: Path, state: dict[str, Any], trainer: Trainer) -> Progress:
    """Load a matching checkpoint into the trainer; one that does not fit this code is an error too."""
    try:
        trainer.model.load_state_dict(state["model"])
        trainer.optimizer.load_state_dict(state["optimizer"])
        trainer.scheduler.load_state_dict(state["scheduler"])
        if state["scaler"]:  # empty when saved on the CPU, where the scaler is off
            trainer.scaler.load_state_dict(state["scaler"])
        return Progress(**state["progress"])
    except (KeyError, RuntimeError, TypeError, ValueError) as exc:
        raise TrainingError(
            f"checkpoint {path} does not fit this model ({type(exc).__name__}: {exc}). It was left as it is; "
            f"delete it (rm {path}) to train from the first epoch."
        ) from exc


# --- reporting --------------------------------------------------------------------------


class Reporter(Protocol):
    def info(self, message: str) -> None: ...

    def materialized(self, metadata: dict[str, Any]) -> None: ...


class ConsoleReporter:
    """Standalone runs: progress lines on stdout."""

    def info(self, message: str) -> None:
        print(message, flush=True)

    def materialized(self, metadata: dict[str, Any]) -> None:
        print(f"done: {metadata['output_folder']['raw_value']}", flush=True)


@dataclass
class PipesReporter:
    """Runs launched by Dagster: logs and the materialization go back through Pipes."""

    context: PipesContext

    def info(self, message: str) -> None:
        self.context.log.info(message)

    def materialized(self, metadata: dict[str, Any]) -> None:
        self.context.report_asset_materialization(metadata=metadata)


# --- the run ----------------------------------------------------------------------------


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def pick_device(choice: str) -> torch.device:
    if choice == "cuda" and not torch.cuda.is_available():
        raise TrainingError("--device cuda was asked for, but CUDA is not available")
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(choice)


def start_or_resume(
    path: Path, fingerprint: dict[str, str], trainer: Trainer, report: Callable[[str], None]
) -> Progress:
    if not path.exists():
        return Progress()
    state = read_checkpoint(path)
    if state["fingerprint"] != fingerprint:
        report(
            f"checkpoint {path} belongs to another training set or params "
            f"({state['fingerprint']} != {fingerprint}): starting fresh; it will be replaced"
        )
        return Progress()
    progress = restore(path, state, trainer)
    report(f"resumed from checkpoint {path} at epoch {progress.epoch}")
    return progress


def fit(
    trainer: Trainer,
    params: TrainParams,
    splits: dict[str, Split],
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
        train_loss = train_epoch(
            trainer, train, params.batch_size, epoch_order(train.rows, params.seed, epoch)
        )
        if trainer.device.type == "cuda":
            torch.cuda.synchronize(trainer.device)
        train_seconds = time.perf_counter() - started
        scores = evaluate(trainer.model, validation, trainer.amp)
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
    history: list[dict[str, float]],
) -> None:
    """Every file goes through a temporary name, so a reader never sees a half-written model."""
    model = model.cpu().eval()
    _replace(out / "model.pt", lambda p: torch.save(model.state_dict(), p))
    _replace(out / "model.json", lambda p: p.write_text(json.dumps(model.config.to_dict(), indent=2) + "\n"))
    _replace(out / "preprocess.json", lambda p: p.write_text(preprocessor.to_json()))
    _replace(out / "model.onnx", lambda p: export_onnx(model, p))
    _replace(
        out / "metrics.json", lambda p: p.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    )
    _replace(out / "history.json", lambda p: p.write_text(json.dumps(history, indent=2) + "\n"))


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
    training_set: Path, out: Path, params_file: Path, device_choice: str, reporter: Reporter
) -> dict[str, Any]:
    """Train (or resume), write the outputs, report; returns the metrics."""
    try:
        section = load_params(params_file).get("train")
    except (FileNotFoundError, ValueError) as exc:
        raise TrainingError(str(exc)) from exc
    if not isinstance(section, dict):
        raise TrainingError(f"params file {params_file} has no train: section")
    params = TrainParams.from_section(section)
    manifest, frames = read_training_set(training_set)
    device = pick_device(device_choice)
    out.mkdir(parents=True, exist_ok=True)
    torch.use_deterministic_algorithms(device.type == "cpu")

    preprocessor = Preprocessor.fit(frames["train"], manifest["categorical"], manifest["numeric"])
    splits = {
        name: to_split(name, frame, preprocessor, manifest["label"], device) for name, frame in frames.items()
    }
    config = ModelConfig(
        cardinalities=tuple(preprocessor.cardinalities),
        numeric_width=preprocessor.numeric_width,
        embedding_dim=params.embedding_dim,
        hidden_sizes=params.hidden_sizes,
        dropout=params.dropout,
    )
    trainer = build_trainer(config, params, steps_per_epoch(splits["train"].rows, params.batch_size), device)
    fingerprint = {"training_set_md5": folder_md5(training_set), "params_hash": params_hash(section)}
    checkpoint = out / CHECKPOINT
    reporter.info(
        f"training on {device_name(device)}: {splits['train'].rows} train rows, "
        f"{splits['validation'].rows} validation rows, up to {params.max_epochs} epochs"
    )
    progress = start_or_resume(checkpoint, fingerprint, trainer, reporter.info)
    progress = fit(
        trainer,
        params,
        splits,
        progress,
        lambda p: save_checkpoint(checkpoint, fingerprint, trainer, p),
        reporter.info,
    )

    trainer.model.load_state_dict(progress.best_state)
    metrics = {
        "validation": evaluate(trainer.model, splits["validation"], trainer.amp),
        "test": evaluate(trainer.model, splits["test"], trainer.amp),
        "best_epoch": progress.best_epoch,
        "epochs_run": progress.epoch,
    }
    write_outputs(out, trainer.model, preprocessor, metrics, progress.history)
    reporter.materialized(materialization_metadata(out, device, metrics, progress.history, fingerprint))
    return metrics


def materialization_metadata(
    out: Path,
    device: torch.device,
    metrics: dict[str, Any],
    history: list[dict[str, float]],
    fingerprint: dict[str, str],
) -> dict[str, Any]:
    losses = [
        {k: row[k] for k in ("epoch", "train_loss", "validation_loss", "validation_auc")} for row in history
    ]
    return {
        "epoch_losses": {"raw_value": losses, "type": "json"},
        "samples_per_second": float(np.median([row["samples_per_second"] for row in history])),
        "device": device_name(device),
        "best_epoch": metrics["best_epoch"],
        "epochs_run": metrics["epochs_run"],
        **{
            f"{split}_{name}": metrics[split][name]
            for split in ("validation", "test")
            for name in ("roc_auc", "log_loss", "rows")
        },
        "training_set_md5": fingerprint["training_set_md5"],
        "params_hash": fingerprint["params_hash"],
        "output_folder": {"raw_value": str(out), "type": "path"},
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m ml.train",
        description=(
            "Train the flight-delay network on a training-set snapshot. Writes model.pt (state dict), "
            "model.json (architecture), preprocess.json, model.onnx, metrics.json and history.json to OUT, "
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
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if PipesEnvVarParamsLoader().is_dagster_pipes_process():
            with open_dagster_pipes() as context:
                run(args.training_set, args.out, args.params, args.device, PipesReporter(context))
        else:
            run(args.training_set, args.out, args.params, args.device, ConsoleReporter())
    except TrainingError as exc:
        print(f"ml.train: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main())
