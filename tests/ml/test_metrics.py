"""Metrics against hand-computed values and scikit-learn; calibration, slices and refusals of bad input."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

from ml.evaluation.metrics import (
    binary_metrics,
    calibration_table,
    expected_calibration_error,
    label_values,
    slice_metrics,
)

Y = np.array([0, 1, 0, 1])
P = np.array([0.1, 0.8, 0.4, 0.3])


def test_binary_metrics_match_hand_computed_values() -> None:
    m = binary_metrics(Y, P)
    # 3 of the 4 (delayed, on-time) pairs are ordered right: 0.8 > 0.1, 0.8 > 0.4, 0.3 > 0.1.
    assert m["roc_auc"] == pytest.approx(0.75)
    # Ranked 0.8 (hit), 0.4, 0.3 (hit): precision 1 at recall 1/2, 2/3 at recall 1.
    assert m["pr_auc"] == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    assert m["log_loss"] == pytest.approx(
        -(math.log(0.9) + math.log(0.8) + math.log(0.6) + math.log(0.3)) / 4
    )
    assert m["brier"] == pytest.approx((0.01 + 0.04 + 0.16 + 0.49) / 4)
    assert m["rows"] == 4
    assert m["positive_rate"] == pytest.approx(0.5)
    assert m["mean_prediction"] == pytest.approx(0.4)


def test_binary_metrics_agree_with_sklearn_on_random_data() -> None:
    rng = np.random.default_rng(7)
    p = rng.uniform(size=2000)
    y = rng.uniform(size=2000) < p
    m = binary_metrics(y, p)
    assert m["roc_auc"] == pytest.approx(roc_auc_score(y, p))
    assert m["pr_auc"] == pytest.approx(average_precision_score(y, p))
    assert m["log_loss"] == pytest.approx(log_loss(y, p))
    assert m["brier"] == pytest.approx(brier_score_loss(y, p))


def test_a_confident_miss_costs_a_finite_log_loss() -> None:
    m = binary_metrics(np.array([1, 0]), np.array([0.0, 0.0]))
    assert math.isfinite(m["log_loss"]) and m["log_loss"] > 10


@pytest.mark.parametrize(
    ("y", "p", "message"),
    [
        (np.array([]), np.array([]), "empty"),
        (np.array([0, 1]), np.array([0.5]), "length mismatch"),
        (np.array([0, 1]), np.array([0.5, 1.2]), r"\[0, 1\]"),
        (np.array([0, 1]), np.array([-0.1, 0.5]), r"\[0, 1\]"),
        (np.array([0, 1]), np.array([0.5, np.nan]), "NaN"),
        (np.array([0, 2]), np.array([0.5, 0.5]), "0/1"),
        (np.array([1, 1, 1]), np.array([0.2, 0.5, 0.9]), "AUC is undefined"),
    ],
)
def test_bad_input_is_refused_with_the_reason(y: np.ndarray, p: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        binary_metrics(y, p)


def test_label_values_refuse_nulls() -> None:
    frame = pl.DataFrame({"is_delayed": [True, None, False]})
    with pytest.raises(ValueError, match="null"):
        label_values(frame, "is_delayed")
    assert label_values(frame.drop_nulls(), "is_delayed").tolist() == [1, 0]


def test_calibration_table_uses_quantile_bins() -> None:
    p = np.arange(1, 101) / 101
    y = (np.arange(100) % 2).astype(int)
    table = calibration_table(y, p, bins=4)
    assert table.columns == ["bin", "p_low", "p_high", "rows", "mean_predicted", "observed_rate"]
    assert table["rows"].to_list() == [25, 25, 25, 25]
    assert table["p_low"][0] == pytest.approx(p.min()) and table["p_high"][-1] == pytest.approx(p.max())
    assert table["observed_rate"].to_list() == pytest.approx([0.48, 0.52, 0.48, 0.52])
    assert table["mean_predicted"][0] == pytest.approx(p[:25].mean())


def test_tied_predictions_share_one_bin() -> None:
    table = calibration_table(np.array([0, 1, 0, 1]), np.full(4, 0.3), bins=10)
    assert table.height == 1 and table["rows"][0] == 4 and table["observed_rate"][0] == 0.5


def test_calibrated_predictions_have_low_ece_and_skewed_ones_high() -> None:
    rng = np.random.default_rng(0)
    p = rng.beta(2, 5, size=20_000)
    y = (rng.uniform(size=p.size) < p).astype(int)
    assert expected_calibration_error(y, p) < 0.02
    assert expected_calibration_error(y, p**2) > 0.1
    assert expected_calibration_error(y, np.minimum(p * 2, 1.0)) > 0.1


def test_slice_metrics_per_value_skipping_small_slices() -> None:
    rng = np.random.default_rng(1)
    n_a, n_b, n_c = 600, 300, 50
    p = rng.uniform(size=n_a + n_b + n_c)
    y = rng.uniform(size=p.size) < p
    y[n_a : n_a + n_b] = False  # slice "b" holds on-time flights only
    frame = pl.DataFrame({"origin": ["a"] * n_a + ["b"] * n_b + ["c"] * n_c, "y": y, "p": p})
    table = slice_metrics(frame, "y", "p", by="origin", min_rows=200)
    assert table["origin"].to_list() == ["a", "b"]
    assert table["rows"].to_list() == [n_a, n_b]
    a = table.row(0, named=True)
    assert a["roc_auc"] == pytest.approx(roc_auc_score(y[:n_a], p[:n_a]))
    assert a["log_loss"] == pytest.approx(log_loss(y[:n_a], p[:n_a]))
    assert a["positive_rate"] == pytest.approx(y[:n_a].mean())
    assert a["mean_prediction"] == pytest.approx(p[:n_a].mean())
    b = table.row(1, named=True)
    assert b["roc_auc"] is None and b["positive_rate"] == 0.0


def test_slice_metrics_keep_nulls_as_a_slice_and_name_missing_columns() -> None:
    frame = pl.DataFrame({"dest": [None, None, "X"], "y": [True, False, True], "p": [0.6, 0.3, 0.5]})
    table = slice_metrics(frame, "y", "p", by="dest", min_rows=1)
    assert table["dest"].to_list() == [None, "X"]
    assert table["roc_auc"][0] == 1.0
    with pytest.raises(ValueError, match="carrier"):
        slice_metrics(frame, "y", "p", by="carrier")
