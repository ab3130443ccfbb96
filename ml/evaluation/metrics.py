"""Metrics of binary delay predictions: ranking, probability quality, calibration and slices.

Every function checks its input and fails with the reason: a metric computed on
broken predictions (NaN, out of range, one class only) would be a wrong number in a
promotion decision, which is worse than a failed evaluation.
"""

from __future__ import annotations

import numpy as np
import polars as pl

LOG_LOSS_EPS = 1e-15
"""Probabilities are clipped to [eps, 1 - eps] in the log loss so a confident miss costs ~34.5, not inf."""


def label_values(frame: pl.DataFrame, label: str) -> np.ndarray:
    """The label column as 0/1 integers; a null label is an error, not a negative."""
    if label not in frame.columns:
        raise ValueError(f"label column {label!r} is missing (columns: {', '.join(frame.columns)})")
    column = frame[label]
    if column.null_count():
        raise ValueError(f"label column {label!r} has {column.null_count()} null value(s)")
    return column.cast(pl.Int8).to_numpy().astype(np.int64)


def _checked(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels as 0/1 integers and probabilities as floats, or a ValueError saying what is wrong."""
    y, p = np.asarray(y), np.asarray(p, dtype=np.float64)
    if y.ndim != 1 or p.ndim != 1:
        raise ValueError(f"labels and probabilities must be 1-d, got shapes {y.shape} and {p.shape}")
    if y.size == 0:
        raise ValueError("no rows to evaluate: labels and probabilities are empty")
    if y.size != p.size:
        raise ValueError(f"length mismatch: {y.size} labels but {p.size} probabilities")
    if np.isnan(p).any():
        raise ValueError(f"{int(np.isnan(p).sum())} probability value(s) are NaN")
    if (p < 0).any() or (p > 1).any():
        raise ValueError(f"probabilities must lie in [0, 1], got values from {p.min()} to {p.max()}")
    if y.dtype != np.bool_:
        y_float = y.astype(np.float64)
        if not np.isin(y_float, (0.0, 1.0)).all():
            raise ValueError("labels must be 0/1 or booleans; found other values (or NaN)")
    return y.astype(np.int64), p


def _log_loss(y: np.ndarray, p: np.ndarray) -> float:
    q = np.clip(p, LOG_LOSS_EPS, 1 - LOG_LOSS_EPS)
    return float(-np.mean(y * np.log(q) + (1 - y) * np.log(1 - q)))


def _roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    """scikit-learn's ROC AUC. scikit-learn is imported on first use, not with this module: it
    takes about a second, which every process that loads the code location would pay."""
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, p))


def binary_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """ROC AUC, average precision, log loss, Brier score and the base rates of one prediction set.

    Both classes must be present: with one class the ROC AUC is undefined, and a
    leaderboard ranked by it would be meaningless.
    """
    from sklearn.metrics import average_precision_score  # imported on use: see _roc_auc

    y, p = _checked(y, p)
    if y.min() == y.max():
        raise ValueError(
            f"all {y.size} labels are {int(y[0])}: ROC AUC is undefined with a single class "
            "(evaluate on a split that holds both delayed and on-time flights)"
        )
    return {
        "roc_auc": _roc_auc(y, p),
        "pr_auc": float(average_precision_score(y, p)),
        "log_loss": _log_loss(y, p),
        "brier": float(np.mean((p - y) ** 2)),
        "rows": int(y.size),
        "positive_rate": float(y.mean()),
        "mean_prediction": float(p.mean()),
    }


def calibration_table(y: np.ndarray, p: np.ndarray, bins: int = 10) -> pl.DataFrame:
    """Reliability table over quantile bins of the predictions.

    Quantile bins (equal rows per bin), not fixed-width ones: delay probabilities
    crowd into a narrow band, where fixed-width bins would leave most bins empty and
    one bin with most rows. Tied predictions never straddle two bins, so heavy ties
    give fewer bins than asked for. A bin holds p_low <= p < p_high; the last one
    includes its upper edge.
    """
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    y, p = _checked(y, p)
    edges = np.unique(np.quantile(p, np.linspace(0.0, 1.0, bins + 1)))
    index = np.searchsorted(edges[1:-1], p, side="right")
    rows = []
    for b in np.unique(index):
        inside = index == b
        low, high = (edges[b], edges[b + 1]) if len(edges) > 1 else (edges[0], edges[0])
        rows.append(
            (
                int(b),
                float(low),
                float(high),
                int(inside.sum()),
                float(p[inside].mean()),
                float(y[inside].mean()),
            )
        )
    return pl.DataFrame(
        rows,
        schema={
            "bin": pl.Int32,
            "p_low": pl.Float64,
            "p_high": pl.Float64,
            "rows": pl.Int64,
            "mean_predicted": pl.Float64,
            "observed_rate": pl.Float64,
        },
        orient="row",
    )


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Row-weighted mean gap between predicted and observed delay rate over `calibration_table` bins."""
    table = calibration_table(y, p, bins)
    gap = (table["mean_predicted"] - table["observed_rate"]).abs()
    return float((gap * table["rows"]).sum() / table["rows"].sum())


def slice_metrics(frame: pl.DataFrame, y_col: str, p_col: str, by: str, min_rows: int = 200) -> pl.DataFrame:
    """Metrics per value of `by` (a null value is its own slice), largest slices first.

    Slices under `min_rows` are left out: their AUC and log loss are mostly noise and
    would draw attention to the wrong rows. ROC AUC is null in a slice with one class.
    """
    missing = [c for c in (y_col, p_col, by) if c not in frame.columns]
    if missing:
        raise ValueError(f"column(s) {', '.join(missing)} missing (columns: {', '.join(frame.columns)})")
    if min_rows < 1:
        raise ValueError(f"min_rows must be at least 1, got {min_rows}")
    y_all, p_all = _checked(label_values(frame, y_col), frame[p_col].cast(pl.Float64).to_numpy())
    keys = frame[by]
    rows = []
    for value in keys.unique(maintain_order=True).to_list():
        inside = (keys.is_null() if value is None else keys == value).fill_null(False).to_numpy()
        y, p = y_all[inside], p_all[inside]
        if y.size < min_rows:
            continue
        auc = _roc_auc(y, p) if y.min() != y.max() else None
        rows.append((value, int(y.size), float(y.mean()), float(p.mean()), auc, _log_loss(y, p)))
    schema = {
        by: keys.dtype,
        "rows": pl.Int64,
        "positive_rate": pl.Float64,
        "mean_prediction": pl.Float64,
        "roc_auc": pl.Float64,
        "log_loss": pl.Float64,
    }
    table = pl.DataFrame(rows, schema=schema, orient="row")
    return table.sort(["rows", by], descending=[True, False], nulls_last=True)
