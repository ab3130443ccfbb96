"""Evaluation of a candidate on its test split, against baselines and the champion."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from ml.evaluation.baselines import BoostedTrees, prior_predictions, prior_rate
from ml.evaluation.leaderboard import GateResult, gate, leaderboard
from ml.evaluation.metrics import (
    binary_metrics,
    calibration_table,
    expected_calibration_error,
    label_values,
    slice_metrics,
)
from ml.evaluation.plots import write_plots
from ml.training.onnx_model import OnnxModel
from ml.training.training_set import read_manifest, read_split

SLICES = ("carrier", "origin")
ROLES = {
    "candidate": "candidate",
    "champion": "champion",
    "boosted_trees": "baseline",
    "prior_rate": "baseline",
}


@dataclass(frozen=True)
class EvaluationReport:
    metrics: dict[str, dict[str, float]]
    leaderboard: pl.DataFrame
    gate: GateResult
    calibration: pl.DataFrame
    slices: dict[str, pl.DataFrame]
    plots: dict[str, Path]

    def summary(self) -> dict[str, Any]:
        """What the registry keeps of an evaluation."""
        return {
            "test": self.metrics["candidate"],
            "baselines": {k: v for k, v in self.metrics.items() if ROLES.get(k) == "baseline"},
            "champion": self.metrics.get("champion"),
            "gate": {
                "passed": self.gate.passed,
                "beats_champion": self.gate.beats_champion.explanation,
                "beats_boosted_trees": self.gate.beats_boosted_trees.explanation,
            },
        }


def evaluate(
    training_set: Path,
    candidate: Path,
    champion: Path | None,
    out: Path,
    margin: float,
    tolerance: float,
) -> EvaluationReport:
    """Score the candidate, the champion (if any) and both baselines on the same test split."""
    manifest = read_manifest(training_set)
    train, validation, test = (read_split(training_set, s) for s in ("train", "validation", "test"))
    y = label_values(test, manifest["label"])
    predictions: dict[str, np.ndarray] = {"candidate": OnnxModel(candidate).predict(test)}
    if champion is not None:
        predictions["champion"] = OnnxModel(champion).predict(test)
    predictions["boosted_trees"] = BoostedTrees.from_manifest(manifest).fit(train, validation).predict(test)
    predictions["prior_rate"] = prior_predictions(prior_rate(train, manifest["label"]), test)
    metrics = {
        name: {**binary_metrics(y, p), "expected_calibration_error": expected_calibration_error(y, p)}
        for name, p in predictions.items()
    }
    verdict = gate(metrics["candidate"], metrics.get("champion"), metrics["boosted_trees"], margin, tolerance)
    scored = test.with_columns(pl.Series("__y", y), pl.Series("__p", predictions["candidate"]))
    report = EvaluationReport(
        metrics=metrics,
        leaderboard=leaderboard([(name, ROLES[name], m) for name, m in metrics.items()]),
        gate=verdict,
        calibration=calibration_table(y, predictions["candidate"]),
        slices={by: slice_metrics(scored, "__y", "__p", by) for by in SLICES},
        plots=write_plots(y, predictions, out),
    )
    (out / "evaluation.json").write_text(json.dumps(report.summary(), indent=2, sort_keys=True) + "\n")
    return report
