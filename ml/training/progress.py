"""How a training run reports: progress lines standalone, logs and a materialization under Dagster Pipes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from dagster_pipes import PipesContext


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


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def materialization_metadata(
    out: Path,
    device: torch.device,
    metrics: dict[str, Any],
    history: list[dict[str, Any]],
    fingerprint: dict[str, str],
) -> dict[str, Any]:
    losses = [
        {k: row[k] for k in ("epoch", "train_loss", "validation_loss", "validation_auc")} for row in history
    ]
    return {
        "epoch_losses": {"raw_value": losses, "type": "json"},
        "samples_per_second": float(np.median([row["samples_per_second"] for row in history])),
        "device": device_name(device),
        "training_data": history[-1].get("data", "memory"),
        "best_epoch": metrics["best_epoch"],
        "epochs_run": metrics["epochs_run"],
        **{f"validation_{name}": metrics["validation"][name] for name in ("roc_auc", "log_loss", "rows")},
        "temperature": metrics["calibration"]["temperature"],
        "training_set_md5": fingerprint["training_set_md5"],
        "params_hash": fingerprint["params_hash"],
        "output_folder": {"raw_value": str(out), "type": "path"},
    }
