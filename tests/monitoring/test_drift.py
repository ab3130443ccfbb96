"""PSI and KS against hand-computed values and scipy, and what breaches."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from scipy.stats import ks_2samp

from ml.monitoring.drift import (
    PSI_FLOOR,
    Thresholds,
    breaches,
    drift_plot,
    drift_table,
    feature_drift,
    ks_statistic,
    psi_of_counts,
)


def test_psi_of_two_bins_by_hand() -> None:
    expected = (0.8 - 0.5) * math.log(0.8 / 0.5) + (0.2 - 0.5) * math.log(0.2 / 0.5)
    assert psi_of_counts(np.array([50.0, 50.0]), np.array([80.0, 20.0])) == pytest.approx(expected, abs=1e-12)
    assert psi_of_counts(np.array([3.0, 7.0]), np.array([30.0, 70.0])) == 0.0


def test_numeric_bins_come_from_the_reference_and_nulls_are_a_bin() -> None:
    reference = pl.Series("x", list(range(1, 11)))
    current = pl.Series("x", [1, 2, 3, 4, 5, 6, 7, 8, None, None])
    row = feature_drift(reference, current, categorical=False, bins=2)
    # The reference's median 5.5 cuts two bins: reference shares 0.5, 0.5 and no nulls;
    # current shares 0.5 (1..5), 0.3 (6..8) and 0.2 nulls, against the floor.
    expected = (0.3 - 0.5) * math.log(0.3 / 0.5) + (0.2 - PSI_FLOOR) * math.log(0.2 / PSI_FLOOR)
    assert row["psi"] == pytest.approx(expected, abs=1e-12)
    assert row["bins"] == 3
    assert row["current_null_rate"] == 0.2 and row["reference_null_rate"] == 0.0
    assert row["ks"] == pytest.approx(0.2)  # at 8: 8/10 of the reference against all of the current


def test_categories_come_from_the_reference_and_unseen_ones_are_a_bin() -> None:
    reference = pl.Series("c", ["a", "a", "b", "b"])
    current = pl.Series("c", ["a", "z", None, "b"])
    row = feature_drift(reference, current, categorical=True)
    # Bins a, b, unseen, null: reference 0.5, 0.5, 0, 0 (floored); current 0.25 each.
    expected = 2 * (0.25 - 0.5) * math.log(0.25 / 0.5) + 2 * (0.25 - PSI_FLOOR) * math.log(0.25 / PSI_FLOOR)
    assert row["psi"] == pytest.approx(expected, abs=1e-12)
    assert row["unseen_rate"] == 0.25 and row["ks"] is None and row["kind"] == "categorical"


def test_ks_equals_scipy_with_ties_and_unequal_sizes() -> None:
    rng = np.random.default_rng(7)
    a = rng.integers(0, 30, 1_000).astype(float)
    b = rng.integers(3, 35, 317).astype(float)
    assert ks_statistic(pl.Series(a), pl.Series(b)) == pytest.approx(ks_2samp(a, b).statistic, abs=1e-12)
    assert ks_statistic(pl.Series([None], dtype=pl.Float64), pl.Series(b)) is None


def _frame(rng: np.random.Generator, n: int, shift: float) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "x": rng.normal(shift, 1.0, n),
            "carrier": rng.choice(["UA", "B6", "EV"], n, p=[0.5, 0.3, 0.2]),
        }
    )


def test_a_shifted_distribution_breaches_and_an_unshifted_one_does_not() -> None:
    rng = np.random.default_rng(13)
    reference = _frame(rng, 20_000, 0.0)
    same = drift_table(reference, _frame(rng, 5_000, 0.0), ["x"], ["carrier"])
    assert same["psi"].max() < 0.02 and same["ks"].max() < 0.05
    assert breaches(same, Thresholds()).is_empty()

    shifted = drift_table(reference, _frame(rng, 5_000, 0.5), ["x"], ["carrier"])
    found = breaches(shifted, Thresholds())
    assert found["feature"].to_list() == ["x"]
    assert found.row(0, named=True)["metric"] == "psi" and found.row(0, named=True)["value"] > 0.2


def test_ks_alone_can_breach_and_names_its_limit() -> None:
    table = pl.DataFrame({"feature": ["x"], "psi": [0.05], "ks": [0.3]})
    row = breaches(table, Thresholds(psi=0.2, ks=0.1)).row(0, named=True)
    assert (row["metric"], row["value"], row["threshold"]) == ("ks", 0.3, 0.1)


def test_a_missing_feature_column_fails_loudly_and_the_plot_is_a_png() -> None:
    rng = np.random.default_rng(1)
    with pytest.raises(ValueError, match="missing"):
        drift_table(_frame(rng, 10, 0), _frame(rng, 10, 0), ["nope"], [])
    table = drift_table(_frame(rng, 500, 0), _frame(rng, 500, 1), ["x"], ["carrier"])
    assert drift_plot(table, Thresholds()).startswith(b"\x89PNG")
