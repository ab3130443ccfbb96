"""Baselines: the prior rate, and boosted trees that learn signal and survive unseen categories and nulls."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from ml.evaluation.baselines import BoostedTrees, fit_vocabulary, prior_predictions, prior_rate
from ml.evaluation.metrics import binary_metrics, label_values
from ml.features.flight_features import CATEGORICAL_FEATURES, FEATURE_SCHEMA, LABEL, NUMERIC_FEATURES

CARRIERS = ["AA", "B6", "DL", "EV", "UA"]
ORIGINS = ["EWR", "JFK", "LGA"]
DESTS = [f"D{i:02d}" for i in range(30)]


def synthetic(rows: int, seed: int) -> pl.DataFrame:
    """Rows in the feature schema whose delay depends on carrier, hour, precipitation and a trailing rate."""
    rng = np.random.default_rng(seed)
    carrier = rng.choice(CARRIERS, rows)
    hour = rng.integers(5, 23, rows)
    precip = rng.exponential(0.05, rows)
    trailing = rng.uniform(0.05, 0.5, rows)
    logit = (
        -2.0
        + 1.2 * (carrier == "EV")
        - 0.8 * (carrier == "DL")
        + 0.12 * (hour - 5)
        + 8 * precip
        + 3 * trailing
    )
    delayed = rng.uniform(size=rows) < 1 / (1 + np.exp(-logit))
    columns: dict[str, object] = {}
    for name, dtype in FEATURE_SCHEMA.items():
        if name in NUMERIC_FEATURES:
            values = rng.normal(size=rows) if dtype == pl.Float64 else rng.integers(0, 50, rows)
            columns[name] = pl.Series(name, values).cast(dtype)
    columns |= {
        "carrier": carrier,
        "origin": rng.choice(ORIGINS, rows),
        "dest": rng.choice(DESTS, rows),
        "dep_hour": pl.Series(hour).cast(pl.Int32),
        "precip": precip,
        "carrier_delay_rate_28d": trailing,
        "flight_date": [dt.date(2013, 1, 1)] * rows,
        LABEL: delayed,
    }
    return pl.DataFrame(columns)


@pytest.fixture(scope="module")
def splits() -> dict[str, pl.DataFrame]:
    return {"train": synthetic(6000, 1), "validation": synthetic(2000, 2), "test": synthetic(3000, 3)}


@pytest.fixture(scope="module")
def trees(splits: dict[str, pl.DataFrame]) -> BoostedTrees:
    return BoostedTrees(max_iter=200).fit(splits["train"], splits["validation"])


def test_prior_is_the_train_delay_rate_for_every_row() -> None:
    train = pl.DataFrame({LABEL: [True, False, False, False]})
    rate = prior_rate(train, LABEL)
    assert rate == 0.25
    assert prior_predictions(rate, pl.DataFrame({"x": [1, 2, 3]})).tolist() == [0.25, 0.25, 0.25]
    with pytest.raises(ValueError, match="empty"):
        prior_rate(train.clear(), LABEL)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        prior_predictions(1.5, train)


def test_vocabulary_keeps_the_most_frequent_values_deterministically() -> None:
    values = pl.Series("dest", ["B", "A", "B", None, "C", "A", "B"])
    assert fit_vocabulary(values, 10) == {"B": 0, "A": 1, "C": 2}
    assert fit_vocabulary(values, 2) == {"B": 0, "A": 1}


def test_boosted_trees_beat_the_prior(trees: BoostedTrees, splits: dict[str, pl.DataFrame]) -> None:
    test = splits["test"]
    y = label_values(test, LABEL)
    boosted = binary_metrics(y, trees.predict(test))
    prior = binary_metrics(y, prior_predictions(prior_rate(splits["train"], LABEL), test))
    assert prior["roc_auc"] == 0.5
    assert boosted["roc_auc"] > 0.7
    assert boosted["log_loss"] < prior["log_loss"] - 0.02
    assert 1 <= trees.iterations < 200  # early stopping ended the boosting
    assert tuple(trees.categorical) == CATEGORICAL_FEATURES


def test_boosted_trees_handle_unseen_categories_and_nulls(
    trees: BoostedTrees, splits: dict[str, pl.DataFrame]
) -> None:
    rows = (
        splits["test"]
        .head(4)
        .with_columns(
            pl.Series("carrier", ["ZZ", None, "AA", "AA"]),
            pl.Series("dest", ["NEW", "D01", None, "D02"]),
            pl.Series("precip", [None, 0.1, None, 0.0], dtype=pl.Float64),
            pl.Series("plane_age", [None, None, 3, None], dtype=pl.Int32),
        )
    )
    p = trees.predict(rows)
    assert p.shape == (4,) and np.isfinite(p).all() and ((p > 0) & (p < 1)).all()


def test_boosted_trees_are_reproducible_and_follow_the_manifest(splits: dict[str, pl.DataFrame]) -> None:
    manifest = {"categorical": ["carrier"], "numeric": ["dep_hour", "precip"], "label": LABEL}
    first = BoostedTrees.from_manifest(manifest, max_iter=30).fit(splits["train"], splits["validation"])
    second = BoostedTrees.from_manifest(manifest, max_iter=30).fit(splits["train"], splits["validation"])
    test = splits["test"]
    np.testing.assert_array_equal(first.predict(test), second.predict(test))
    assert first.model is not None and first.model.n_features_in_ == 3


def test_boosted_trees_refuse_what_they_cannot_learn_from(splits: dict[str, pl.DataFrame]) -> None:
    with pytest.raises(RuntimeError, match="before fit"):
        BoostedTrees().predict(splits["test"])
    with pytest.raises(ValueError, match="dest"):
        BoostedTrees().fit(splits["train"].drop("dest"), splits["validation"])
    one_class = splits["train"].with_columns(pl.lit(False).alias(LABEL))
    with pytest.raises(ValueError, match="only label 0"):
        BoostedTrees().fit(one_class, splits["validation"])
