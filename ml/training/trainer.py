"""The state a training run carries and restores: params, model and optimizer, progress, checkpoints.

A lost machine costs at most one epoch: every epoch ends with an atomic checkpoint, and
a rerun with the same training set and parameters resumes from it (`start_or_resume`).
A checkpoint that cannot be read, or that does not fit the model, is an error that
leaves the file as it is.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ml.training.model import ModelConfig, TabularNet

CHECKPOINT = Path("checkpoints") / "last.pt"
CHECKPOINT_FORMAT = 1


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


@dataclass
class Progress:
    """What early stopping and the reports need besides the trainer's own state."""

    epoch: int = 0
    best_epoch: int = 0
    best_loss: float = math.inf
    best_state: dict[str, torch.Tensor] = field(default_factory=dict)
    bad_epochs: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)

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
