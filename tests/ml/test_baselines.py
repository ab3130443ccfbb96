"""Baselines: the prior rate, and boosted trees that learn signal and survive unseen categories and nulls."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from ml.evaluation.baselines import (
    BoostedTrees,
    TreeSettings,
    fit_vocabulary,
    grid_from_params,
    prior_predictions,
    prior_rate,
)
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


SMALL_GRID = (TreeSettings(0.1, 15, 20, 1.0), TreeSettings(0.1, 31, 50, 1.0))
"""Two points are enough to exercise the choice; the default grid is sized for a year of flights."""


@pytest.fixture(scope="module")
def splits() -> dict[str, pl.DataFrame]:
    return {"train": synthetic(6000, 1), "validation": synthetic(2000, 2), "test": synthetic(3000, 3)}


@pytest.fixture(scope="module")
def trees(splits: dict[str, pl.DataFrame]) -> BoostedTrees:
    return BoostedTrees(grid=SMALL_GRID, max_iter=200).fit(splits["train"], splits["validation"])


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
    assert trees.model is not None and trees.model.n_iter_ == trees.iterations
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
    first = BoostedTrees.from_manifest(manifest, grid=SMALL_GRID, max_iter=30)
    second = BoostedTrees.from_manifest(manifest, grid=SMALL_GRID, max_iter=30)
    first.fit(splits["train"], splits["validation"])
    second.fit(splits["train"], splits["validation"])
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


def test_tuning_keeps_the_grid_point_and_round_with_the_best_validation_auc(
    splits: dict[str, pl.DataFrame],
) -> None:
    """A grid point too weak to learn (stumps at a tiny rate) loses to an ordinary one, judged on validation."""
    weak = TreeSettings(learning_rate=0.001, max_leaf_nodes=2, min_samples_leaf=2000, l2_regularization=0.0)
    ordinary = TreeSettings(learning_rate=0.1, max_leaf_nodes=15, min_samples_leaf=20, l2_regularization=1.0)
    trees = BoostedTrees(grid=(weak, ordinary), max_iter=150).fit(splits["train"], splits["validation"])
    assert [t.settings for t in trees.trials] == [weak, ordinary]
    assert trees.chosen is not None and trees.chosen.settings == ordinary
    assert trees.validation_auc == max(t.validation_auc for t in trees.trials)
    assert trees.settings == {**ordinary.as_dict(), "iterations": trees.iterations}
    validation = splits["validation"]
    refitted = binary_metrics(label_values(validation, LABEL), trees.predict(validation))["roc_auc"]
    assert refitted == pytest.approx(trees.validation_auc, abs=1e-9)  # the refit is the chosen round


def test_tuning_refuses_a_validation_split_that_cannot_rank(splits: dict[str, pl.DataFrame]) -> None:
    one_class = splits["validation"].with_columns(pl.lit(True).alias(LABEL))
    with pytest.raises(ValueError, match="validation split has only label 1"):
        BoostedTrees().fit(splits["train"], one_class)


def test_the_grid_comes_from_params_and_refuses_an_empty_axis() -> None:
    grid = grid_from_params({"learning_rate": [0.05], "max_leaf_nodes": [15, 31], "min_samples_leaf": 50})
    assert [(g.learning_rate, g.max_leaf_nodes, g.min_samples_leaf) for g in grid] == [
        (0.05, 15, 50),
        (0.05, 31, 50),
    ]
    assert {g.l2_regularization for g in grid} == {1.0}  # the default axis
    manifest = {"categorical": ["carrier"], "numeric": ["dep_hour"], "label": LABEL}
    trees = BoostedTrees.from_params(manifest, {"learning_rate": [0.1], "max_iter": 40})
    assert trees.max_iter == 40 and len(trees.grid) == 4 and trees.numeric == ("dep_hour",)
    with pytest.raises(ValueError, match=r"baseline\.max_leaf_nodes is an empty list"):
        grid_from_params({"max_leaf_nodes": []})
    with pytest.raises(ValueError, match=r"baseline\.learning_rate has a value that is not a number"):
        grid_from_params({"learning_rate": ["fast"]})
