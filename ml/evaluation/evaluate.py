"""Evaluation of a candidate on its test split, against baselines and the champion."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from ml.evaluation.baselines import BoostedTrees, prior_predictions, prior_rate
from ml.evaluation.bootstrap import paired_bootstrap
from ml.evaluation.leaderboard import GateResult, GateSettings, gate, leaderboard
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
DAY = "flight_date"
"""The bootstrap's block: flights of one day share weather and knock-on delays."""
ROLES = {
    "candidate": "candidate",
    "champion": "champion",
    "boosted_trees": "baseline",
    "prior_rate": "baseline",
}
SELECTION = {"baseline_tuning": "validation", "gate": "test"}
"""Which split chose what in evaluation; the trainer records its own choices (early stopping,
calibration) in its metrics.json. The test split decides the gate and nothing else, so its
verdict is unbiased."""


@dataclass(frozen=True)
class EvaluationReport:
    metrics: dict[str, dict[str, Any]]
    leaderboard: pl.DataFrame
    gate: GateResult
    calibration: pl.DataFrame
    slices: dict[str, pl.DataFrame]
    plots: dict[str, Path]
    selection: dict[str, str]

    def summary(self) -> dict[str, Any]:
        """What the registry keeps of an evaluation."""
        return {
            "test": self.metrics["candidate"],
            "baselines": {k: v for k, v in self.metrics.items() if ROLES.get(k) == "baseline"},
            "champion": self.metrics.get("champion"),
            "gate": self.gate.summary(),
            "selection": self.selection,
        }


def training_selection(candidate: Path) -> dict[str, str]:
    """The splits the trainer says its choices were made on, so the registry records them rather than assumes."""
    return dict(json.loads((candidate / "metrics.json").read_text()).get("selection", {}))


def evaluate(
    training_set: Path,
    candidate: Path,
    champion: Path | None,
    out: Path,
    settings: GateSettings,
    baseline: Mapping[str, Any] | None = None,
    source: Mapping[str, Any] | None = None,
) -> EvaluationReport:
    """Score the candidate, the champion (if any) and both baselines on the same test split and gate it."""
    manifest = read_manifest(training_set)
    train, validation, test = (read_split(training_set, s) for s in ("train", "validation", "test"))
    y = label_values(test, manifest["label"])
    predictions: dict[str, np.ndarray] = {"candidate": OnnxModel(candidate).predict(test)}
    if champion is not None:
        predictions["champion"] = OnnxModel(champion).predict(test)
    trees = BoostedTrees.from_params(manifest, baseline or {}).fit(train, validation)
    predictions["boosted_trees"] = trees.predict(test)
    predictions["prior_rate"] = prior_predictions(prior_rate(train, manifest["label"]), test)
    metrics: dict[str, dict[str, Any]] = {
        name: {**binary_metrics(y, p), "expected_calibration_error": expected_calibration_error(y, p)}
        for name, p in predictions.items()
    }
    bootstrap = paired_bootstrap(
        y, test[DAY].to_numpy(), predictions, settings.resamples, settings.confidence, settings.seed
    )
    for name in predictions:
        interval = bootstrap.auc(name)
        metrics[name].update(roc_auc_low=interval.low, roc_auc_high=interval.high)
    metrics["boosted_trees"].update(settings=trees.settings, validation_auc=trees.validation_auc)
    verdict = gate(bootstrap, metrics["candidate"]["expected_calibration_error"], settings, source)
    scored = test.with_columns(pl.Series("__y", y), pl.Series("__p", predictions["candidate"]))
    report = EvaluationReport(
        metrics=metrics,
        leaderboard=leaderboard([(name, ROLES[name], m) for name, m in metrics.items()]),
        gate=verdict,
        calibration=calibration_table(y, predictions["candidate"]),
        slices={by: slice_metrics(scored, "__y", "__p", by) for by in SLICES},
        plots=write_plots(y, predictions, verdict, out),
        selection={**training_selection(candidate), **SELECTION},
    )
    (out / "evaluation.json").write_text(json.dumps(report.summary(), indent=2, sort_keys=True) + "\n")
    return report
