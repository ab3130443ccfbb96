"""The paired day-block bootstrap: exact weighted AUCs, seeded draws, and intervals that mean what they say."""

from __future__ import annotations

import datetime as dt
import time

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from ml.evaluation.bootstrap import day_resamples, paired_bootstrap

FIRST_DAY = np.datetime64("2013-11-01")


def split(days: int, per_day: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """A test split of `days` days: labels, each row's flight date, and three models of differing skill."""
    rng = np.random.default_rng(seed)
    day = FIRST_DAY + np.repeat(np.arange(days), per_day).astype("timedelta64[D]")
    truth = rng.uniform(size=day.size)
    y = (rng.uniform(size=day.size) < 0.1 + 0.5 * truth).astype(np.int64)
    models = {
        "sharp": truth + rng.normal(0, 0.1, day.size),
        "blunt": truth + rng.normal(0, 0.6, day.size),
        "rounded": np.round(truth + rng.normal(0, 0.3, day.size), 1),  # many ties
    }
    return y, day, models


def test_every_resample_is_the_sklearn_auc_with_day_multiplicities_as_row_weights() -> None:
    y, day, models = split(days=12, per_day=150)
    # shuffled rows: the bootstrap must not rely on rows arriving sorted by day or score
    order = np.random.default_rng(1).permutation(y.size)
    y, day, models = y[order], day[order], {n: p[order] for n, p in models.items()}
    result = paired_bootstrap(y, day, models, resamples=50, seed=3)
    _, row_day = np.unique(day, return_inverse=True)
    for name, p in models.items():
        assert result.point[name] == pytest.approx(roc_auc_score(y, p), abs=1e-12)
        for r in (0, 17, 49):
            weights = result.multiplicities[r][row_day]
            assert result.resampled[name][r] == pytest.approx(
                roc_auc_score(y, p, sample_weight=weights), abs=1e-12
            )
    assert (result.multiplicities.sum(axis=1) == 12).all()


def test_the_same_seed_draws_the_same_days_and_another_seed_other_days() -> None:
    y, day, models = split(days=20, per_day=100)
    first = paired_bootstrap(y, day, models, resamples=200, seed=7)
    again = paired_bootstrap(y, day, models, resamples=200, seed=7)
    other = paired_bootstrap(y, day, models, resamples=200, seed=8)
    assert first.difference("sharp", "blunt") == again.difference("sharp", "blunt")
    assert np.array_equal(first.multiplicities, day_resamples(20, 200, 7))
    assert first.difference("sharp", "blunt") != other.difference("sharp", "blunt")
    assert first.point == other.point


def test_a_clearly_better_model_has_its_whole_interval_above_zero() -> None:
    y, day, models = split(days=30, per_day=200)
    result = paired_bootstrap(y, day, models, resamples=1000)
    lead = result.difference("sharp", "blunt")
    assert 0 < lead.low < lead.estimate < lead.high
    behind = result.difference("blunt", "sharp")
    assert behind.high < 0
    sharp = result.auc("sharp")
    assert sharp.low < sharp.estimate < sharp.high


def test_identical_predictions_have_a_zero_interval() -> None:
    y, day, models = split(days=10, per_day=100)
    same = {"candidate": models["rounded"], "copy": models["rounded"].copy()}
    difference = paired_bootstrap(y, day, same).difference("candidate", "copy")
    assert (difference.estimate, difference.low, difference.high) == (0.0, 0.0, 0.0)


def test_bad_input_is_refused_with_the_reason() -> None:
    y, day, models = split(days=5, per_day=50)
    with pytest.raises(ValueError, match="one length"):
        paired_bootstrap(y, day[:-1], models)
    with pytest.raises(ValueError, match="NaN"):
        paired_bootstrap(y, day, {"broken": np.full(y.size, np.nan)})
    with pytest.raises(ValueError, match="empty"):
        paired_bootstrap(y, day, {})
    with pytest.raises(KeyError, match="no bootstrap for missing"):
        paired_bootstrap(y, day, models, resamples=10).difference("sharp", "missing")
    # a day of delays only and a day of on-time flights only: most resamples hold one class
    one_class_days = np.array([dt.date(2013, 11, 1)] * 3 + [dt.date(2013, 11, 2)] * 3)
    with pytest.raises(ValueError, match="only one class"):
        paired_bootstrap(np.array([1, 1, 1, 0, 0, 0]), one_class_days, {"m": np.linspace(0, 1, 6)})


def test_two_gate_comparisons_on_a_full_test_split_take_well_under_five_seconds() -> None:
    """The size of the default test split: about 54,000 flights over November and December."""
    y, day, models = split(days=61, per_day=885)
    start = time.perf_counter()
    result = paired_bootstrap(y, day, models, resamples=1000)
    result.difference("sharp", "blunt"), result.difference("sharp", "rounded")
    assert time.perf_counter() - start < 5.0
