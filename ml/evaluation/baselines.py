"""Baselines a candidate network must beat: the train delay rate and gradient-boosted trees.

The prior says how much any model learns at all; the boosted trees say whether the
network is worth its GPU, since trees on the same features are the strong default
for tabular data.

The trees are not persisted. Writing a scikit-learn estimator needs pickle (or
joblib, which is pickle), and the design forbids pickled models; refitting on the
snapshot takes seconds and gives the same trees from the same bytes, so evaluation
retrains them every time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
from sklearn.ensemble import HistGradientBoostingClassifier

from ml.evaluation.metrics import label_values
from ml.features.flight_features import CATEGORICAL_FEATURES, LABEL, NUMERIC_FEATURES

MAX_CATEGORIES = 255
"""HistGradientBoostingClassifier's limit of categories per feature (its `max_bins`)."""


def prior_rate(train: pl.DataFrame, label: str = LABEL) -> float:
    """Share of delayed flights in the training split: the best constant prediction under log loss."""
    y = label_values(train, label)
    if y.size == 0:
        raise ValueError("the training split is empty: no prior delay rate")
    return float(y.mean())


def prior_predictions(rate: float, frame: pl.DataFrame) -> np.ndarray:
    """The prior rate for every row of `frame`."""
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"a prior rate must lie in [0, 1], got {rate}")
    return np.full(frame.height, rate, dtype=np.float64)


def fit_vocabulary(values: pl.Series, limit: int) -> dict[str, int]:
    """Codes for the `limit` most frequent non-null values (ties by value), so codes are deterministic.

    The trees accept at most `MAX_CATEGORIES` categories per feature; rarer values, unseen
    values and nulls all become "missing".
    """
    counts = values.cast(pl.String).drop_nulls().value_counts(name="n")
    ordered = counts.sort(["n", values.name], descending=[True, False]).head(limit)
    return {value: code for code, value in enumerate(ordered[values.name].to_list())}


@dataclass
class BoostedTrees:
    """HistGradientBoostingClassifier on the network's features, early-stopped on the validation split.

    Early stopping monitors the validation log loss of the snapshot's own validation
    days (`fit(..., X_val=, y_val=)`, scikit-learn >= 1.7) rather than a random
    fraction of train: the validation days come after the training days, so the
    stopping point is chosen on the same time shift the test split will see.
    """

    categorical: Sequence[str] = CATEGORICAL_FEATURES
    numeric: Sequence[str] = NUMERIC_FEATURES
    label: str = LABEL
    max_iter: int = 500
    learning_rate: float = 0.1
    n_iter_no_change: int = 20
    random_state: int = 0
    vocabularies: dict[str, dict[str, int]] = field(default_factory=dict, init=False)
    model: HistGradientBoostingClassifier | None = field(default=None, init=False)

    @classmethod
    def from_manifest(cls, manifest: Mapping[str, Any], **settings: Any) -> BoostedTrees:
        """Trees on exactly the feature lists a training-set snapshot records."""
        return cls(
            categorical=tuple(manifest["categorical"]),
            numeric=tuple(manifest["numeric"]),
            label=str(manifest["label"]),
            **settings,
        )

    def _require_columns(self, frame: pl.DataFrame) -> None:
        missing = [c for c in (*self.categorical, *self.numeric) if c not in frame.columns]
        if missing:
            raise ValueError(f"feature column(s) {', '.join(missing)} missing from the frame")

    def _matrix(self, frame: pl.DataFrame) -> np.ndarray:
        """Categorical codes first (NaN when null or unknown), then numeric columns (NaN for nulls)."""
        self._require_columns(frame)
        codes = [
            pl.col(c)
            .cast(pl.String)
            .replace_strict(self.vocabularies[c], default=None, return_dtype=pl.Float64)
            for c in self.categorical
        ]
        numbers = [pl.col(c).cast(pl.Float64) for c in self.numeric]
        return frame.select(*codes, *numbers).fill_null(np.nan).to_numpy().astype(np.float64)

    def fit(self, train: pl.DataFrame, validation: pl.DataFrame) -> BoostedTrees:
        """Fit the vocabularies and the trees on train; validation only decides when boosting stops."""
        if train.is_empty() or validation.is_empty():
            raise ValueError(
                f"boosted trees need rows in train ({train.height}) and validation ({validation.height})"
            )
        self._require_columns(train)
        y = label_values(train, self.label)
        if y.min() == y.max():
            raise ValueError(f"the training split has only label {int(y[0])}: nothing for the trees to learn")
        self.vocabularies = {c: fit_vocabulary(train[c], MAX_CATEGORIES) for c in self.categorical}
        model = HistGradientBoostingClassifier(
            learning_rate=self.learning_rate,
            max_iter=self.max_iter,
            max_bins=MAX_CATEGORIES,
            categorical_features=list(range(len(self.categorical))),
            early_stopping=True,
            scoring="loss",
            n_iter_no_change=self.n_iter_no_change,
            random_state=self.random_state,
        )
        model.fit(
            self._matrix(train),
            y,
            X_val=self._matrix(validation),
            y_val=label_values(validation, self.label),
        )
        self.model = model
        return self

    def predict(self, frame: pl.DataFrame) -> np.ndarray:
        """Delay probability per row."""
        if self.model is None:
            raise RuntimeError("BoostedTrees.predict called before fit")
        return self.model.predict_proba(self._matrix(frame))[:, 1]

    @property
    def iterations(self) -> int:
        """Boosting rounds kept after early stopping, for metadata."""
        if self.model is None:
            raise RuntimeError("BoostedTrees is not fitted")
        return int(self.model.n_iter_)
