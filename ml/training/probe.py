"""The probe: a few hundred fixed validation rows with the exported model's own answers to them.

Training writes it into the model folder (`probe.parquet`, pinned with the model), and the model
server scores it with the ONNX model it is about to serve before swapping that model in. File
md5s prove the bytes are the registered ones; the probe proves the bytes still compute what
training saw them compute: a model with garbled but loadable weights, or with a NaN in one
embedding row, answers its probe differently and is refused before any client sees it.

The rows are chosen without randomness (the first row of every category value, then evenly
spaced rows) and the answers come from onnxruntime on one thread, so a retraining on the CPU
writes the same bytes and `ml.reproduce` still finds the model byte-identical. Every category
of the validation split is in it, so a NaN confined to one carrier's embedding shows up.

This module imports no torch: the server reads probes with it.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from ml.training.onnx_model import OnnxModel

PROBE_FILE = "probe.parquet"
PROBE_ROWS = 256
"""Evenly spaced validation rows, on top of one row per category value."""
LABEL = "label"
RECORDED = "recorded_probability"
"""The exported graph's answer (float32, as onnxruntime gives it) when training wrote the probe."""
ROW = "_probe_row"
LOG_LOSS_EPS = 1e-15
"""As in `ml.evaluation.metrics`: a confident miss costs about 34.5, not infinity."""


def select_rows(validation: pl.LazyFrame, categorical: Sequence[str], rows: int = PROBE_ROWS) -> pl.DataFrame:
    """The first row of each value of each categorical column, and `rows` evenly spaced rows, in split order.

    Found by streaming queries over the split (row numbers first, then only the chosen rows), so a
    validation split of any size is never held whole.
    """
    indexed = validation.with_row_index(ROW)
    height = int(indexed.select(pl.len()).collect(engine="streaming").item())
    if height == 0:
        raise ValueError("cannot build a probe from an empty validation split")
    chosen: set[int] = set()
    for column in categorical:
        firsts = indexed.group_by(column).agg(pl.col(ROW).min()).collect(engine="streaming")
        chosen.update(int(i) for i in firsts[ROW])
    spaced = np.linspace(0, height - 1, num=min(rows, height))
    chosen.update(int(i) for i in np.round(spaced))
    picked = indexed.filter(pl.col(ROW).is_in(sorted(chosen))).collect(engine="streaming")
    return picked.sort(ROW).drop(ROW)


def build_probe(validation: pl.LazyFrame, label: str, model: OnnxModel) -> pl.DataFrame:
    """The probe frame: the model's input columns, the label (0/1) and what `model` answers."""
    pre = model.preprocessor
    rows = select_rows(validation, pre.categorical)
    answers = model.predict(rows)
    return rows.select(
        *pre.categorical,
        *pre.numeric,
        pl.col(label).cast(pl.Int8).alias(LABEL),
        pl.Series(RECORDED, answers, dtype=pl.Float32),
    )


def write_probe(frame: pl.DataFrame, path: Path) -> None:
    """Statistics off: the file's bytes then depend on its rows alone."""
    frame.write_parquet(path, compression="zstd", statistics=False)


def read_probe(data: bytes) -> pl.DataFrame:
    """A probe from the bytes already read (and hashed) by the caller."""
    frame = pl.read_parquet(io.BytesIO(data))
    missing = [c for c in (LABEL, RECORDED) if c not in frame.columns]
    if missing:
        raise ValueError(f"the probe lacks column(s) {', '.join(missing)}")
    return frame


def probe_scores(labels: np.ndarray, probabilities: np.ndarray) -> dict[str, Any]:
    """Rows, ROC AUC (None with one class) and log loss of the probe, in numpy alone.

    The server computes these too, without scikit-learn: the AUC is the Mann-Whitney statistic
    with tied predictions given their mean rank, which is what `roc_auc_score` computes.
    """
    y = np.asarray(labels, dtype=np.float64)
    p = np.asarray(probabilities, dtype=np.float64)
    q = np.clip(p, LOG_LOSS_EPS, 1 - LOG_LOSS_EPS)
    log_loss = float(-np.mean(y * np.log(q) + (1 - y) * np.log(1 - q)))
    positives = int(y.sum())
    negatives = y.size - positives
    auc: float | None = None
    if positives and negatives:
        _, inverse, counts = np.unique(p, return_inverse=True, return_counts=True)
        ends = np.cumsum(counts)
        mean_rank = ends - (counts - 1) / 2.0
        ranks = mean_rank[inverse]
        auc = float((ranks[y == 1].sum() - positives * (positives + 1) / 2.0) / (positives * negatives))
    return {"rows": int(y.size), "roc_auc": auc, "log_loss": log_loss}
