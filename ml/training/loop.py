"""One training epoch, and the evaluation of a split, over streamed batches (`ml.training.stream`).

Evaluation is batched like training: a split is read `EVAL_BATCH` rows at a time, so only its
logits and labels (16 bytes a row) are kept whole, which the metrics need.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch
from torch.nn import functional

from ml.evaluation.metrics import binary_metrics
from ml.training.calibration import fit_temperature
from ml.training.model import TabularNet
from ml.training.stream import SplitStream
from ml.training.trainer import Trainer, TrainingError

EVAL_BATCH = 65536


def train_epoch(trainer: Trainer, train: SplitStream, batch_size: int, seed: int, epoch: int) -> float:
    """One pass over `train` in the epoch's seeded order; returns the mean training loss.

    The loss is summed on the device and read once, so a GPU never waits on the host inside
    the loop.
    """
    model, optimizer, scaler = trainer.model, trainer.optimizer, trainer.scaler
    model.train()
    total = torch.zeros((), device=trainer.device)
    for batch in train.epoch(batch_size, seed, epoch):
        with torch.autocast(trainer.device.type, enabled=trainer.amp):
            logits = model(batch.categorical, batch.numeric)
        loss = functional.binary_cross_entropy_with_logits(logits.float(), batch.label)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        trainer.scheduler.step()
        total += loss.detach() * batch.rows
    return float(total) / train.rows


@torch.no_grad()
def logits(model: TabularNet, split: SplitStream, amp: bool) -> tuple[np.ndarray, np.ndarray]:
    """Raw logits (float64) and labels (0/1 int64) of a split, in file order, in evaluation batches."""
    model.eval()
    parts, labels = [], []
    for batch in split.sequential(EVAL_BATCH):
        with torch.autocast(split.device.type, enabled=amp):
            out = model(batch.categorical, batch.numeric)
        parts.append(out.float().cpu().numpy())
        labels.append(batch.label.cpu().numpy().astype(np.int64))  # a copy: the batch may be a reused buffer
    return np.concatenate(parts).astype(np.float64), np.concatenate(labels)


def probabilities(logit: np.ndarray, temperature: float) -> np.ndarray:
    """sigmoid(logit / temperature): what the exported graph computes."""
    return 1.0 / (1.0 + np.exp(-logit / temperature))


def calibrate(model: TabularNet, validation: SplitStream, amp: bool) -> dict[str, Any]:
    """Fit the temperature on the validation split and set it on the model; metrics before and after.

    One forward pass: the temperature only rescales the logits it is fitted on.
    """
    z, y = logits(model, validation, amp)
    try:
        before = binary_metrics(y, probabilities(z, 1.0))
        temperature = fit_temperature(z, y)
        after = binary_metrics(y, probabilities(z, temperature))
    except ValueError as exc:
        raise TrainingError(f"cannot calibrate on the validation split: {exc}") from exc
    model.config = dataclasses.replace(model.config, temperature=temperature)
    return {
        "validation": after,
        "calibration": {
            "method": "temperature",
            "temperature": temperature,
            "validation_log_loss_before": before["log_loss"],
        },
    }


def evaluate(model: TabularNet, split: SplitStream, amp: bool, name: str) -> dict[str, float]:
    z, y = logits(model, split, amp)
    try:
        return binary_metrics(y, probabilities(z, model.config.temperature))
    except ValueError as exc:
        raise TrainingError(f"cannot evaluate the {name} split: {exc}") from exc
