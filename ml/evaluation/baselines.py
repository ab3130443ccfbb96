"""Baselines a candidate network must beat: the train delay rate and gradient-boosted trees.

The prior says how much any model learns at all; the boosted trees say whether the
network is worth its GPU, since trees on the same features are the strong default
for tabular data.

The trees are tuned on validation and not persisted. Writing a scikit-learn estimator needs pickle (or
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


@dataclass(frozen=True)
class TreeSettings:
    """One point of the tuning grid: HistGradientBoostingClassifier's capacity and regularization."""

    learning_rate: float
    max_leaf_nodes: int
    min_samples_leaf: int
    l2_regularization: float

    def as_dict(self) -> dict[str, float | int]:
        return {
            "learning_rate": self.learning_rate,
            "max_leaf_nodes": self.max_leaf_nodes,
            "min_samples_leaf": self.min_samples_leaf,
            "l2_regularization": self.l2_regularization,
        }


DEFAULT_GRID: tuple[TreeSettings, ...] = tuple(
    TreeSettings(rate, leaves, leaf, l2)
    for rate in (0.05, 0.1)
    for leaves in (31, 63)
    for leaf in (100, 200)
    for l2 in (1.0,)
)
"""What a practitioner tries first on tabular data of this size: two learning rates, two tree sizes,
two minimum leaf sizes, a little l2. Iterations are not on the grid: each point boosts until the
validation ROC AUC stops improving and keeps the best round."""


GRID_KEYS = ("learning_rate", "max_leaf_nodes", "min_samples_leaf", "l2_regularization")


def grid_from_params(section: Mapping[str, Any]) -> tuple[TreeSettings, ...]:
    """Every combination of the value lists of params.yaml's `baseline:` section, in file order.

    A missing key keeps the default grid's values; an empty list or a value of the wrong type
    is an error naming the key, not a silently smaller search.
    """
    defaults = {key: sorted({getattr(s, key) for s in DEFAULT_GRID}) for key in GRID_KEYS}
    values: dict[str, list[Any]] = {}
    for key in GRID_KEYS:
        given = section.get(key, defaults[key])
        given = given if isinstance(given, list) else [given]
        if not given:
            raise ValueError(f"params.yaml baseline.{key} is an empty list: the grid would be empty")
        cast = float if key in ("learning_rate", "l2_regularization") else int
        try:
            values[key] = [cast(v) for v in given]
        except (TypeError, ValueError) as exc:
            raise ValueError(f"params.yaml baseline.{key} has a value that is not a number: {given}") from exc
    return tuple(
        TreeSettings(rate, leaves, leaf, l2)
        for rate in values["learning_rate"]
        for leaves in values["max_leaf_nodes"]
        for leaf in values["min_samples_leaf"]
        for l2 in values["l2_regularization"]
    )


@dataclass(frozen=True)
class Trial:
    """One grid point's result on the validation split."""

    settings: TreeSettings
    iterations: int
    validation_auc: float


@dataclass
class BoostedTrees:
    """HistGradientBoostingClassifier on the network's features, tuned on the validation split alone.

    Every grid point is boosted with early stopping on the validation ROC AUC of the
    snapshot's own validation days (`fit(..., X_val=, y_val=)`, scikit-learn >= 1.7), its
    best round is read from the validation scores, and the point with the best validation
    AUC is refitted to exactly that many rounds. The validation days come after the training
    days, so the choice is made on the same kind of time shift the test split will see;
    ranking by AUC rather than log loss keeps a validation month whose delay rate differs
    from training's (October's is far lower) from stopping the boosting early for a shift
    of level the ranking does not care about. The test split is never read here.
    """

    categorical: Sequence[str] = CATEGORICAL_FEATURES
    numeric: Sequence[str] = NUMERIC_FEATURES
    label: str = LABEL
    grid: Sequence[TreeSettings] = DEFAULT_GRID
    max_iter: int = 1000
    n_iter_no_change: int = 30
    random_state: int = 0
    vocabularies: dict[str, dict[str, int]] = field(default_factory=dict, init=False)
    model: HistGradientBoostingClassifier | None = field(default=None, init=False)
    trials: list[Trial] = field(default_factory=list, init=False)
    """Every grid point's validation result, in grid order."""
    chosen: Trial | None = field(default=None, init=False)

    @classmethod
    def from_manifest(cls, manifest: Mapping[str, Any], **settings: Any) -> BoostedTrees:
        """Trees on exactly the feature lists a training-set snapshot records."""
        return cls(
            categorical=tuple(manifest["categorical"]),
            numeric=tuple(manifest["numeric"]),
            label=str(manifest["label"]),
            **settings,
        )

    @classmethod
    def from_params(cls, manifest: Mapping[str, Any], section: Mapping[str, Any]) -> BoostedTrees:
        """Trees on the snapshot's features with the grid and boosting limits of params.yaml `baseline:`."""
        limits = {key: int(section[key]) for key in ("max_iter", "n_iter_no_change") if key in section}
        return cls.from_manifest(manifest, grid=grid_from_params(section), **limits)

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

    def _estimator(
        self, settings: TreeSettings, max_iter: int, early_stopping: bool
    ) -> HistGradientBoostingClassifier:
        return HistGradientBoostingClassifier(
            learning_rate=settings.learning_rate,
            max_leaf_nodes=settings.max_leaf_nodes,
            min_samples_leaf=settings.min_samples_leaf,
            l2_regularization=settings.l2_regularization,
            max_iter=max_iter,
            max_bins=MAX_CATEGORIES,
            categorical_features=list(range(len(self.categorical))),
            early_stopping=early_stopping,
            scoring="roc_auc",
            n_iter_no_change=self.n_iter_no_change,
            tol=1e-6,
            random_state=self.random_state,
        )

    def fit(self, train: pl.DataFrame, validation: pl.DataFrame) -> BoostedTrees:
        """Fit the vocabularies on train, tune on validation, refit the best grid point on train."""
        if train.is_empty() or validation.is_empty():
            raise ValueError(
                f"boosted trees need rows in train ({train.height}) and validation ({validation.height})"
            )
        if not self.grid:
            raise ValueError("boosted trees need at least one grid point to try")
        self._require_columns(train)
        self._require_columns(validation)
        y = label_values(train, self.label)
        if y.min() == y.max():
            raise ValueError(f"the training split has only label {int(y[0])}: nothing for the trees to learn")
        y_val = label_values(validation, self.label)
        if y_val.min() == y_val.max():
            raise ValueError(
                f"the validation split has only label {int(y_val[0])}: its ROC AUC cannot choose the trees"
            )
        self.vocabularies = {c: fit_vocabulary(train[c], MAX_CATEGORIES) for c in self.categorical}
        x, x_val = self._matrix(train), self._matrix(validation)
        self.trials = [self._trial(settings, x, y, x_val, y_val) for settings in self.grid]
        self.chosen = max(self.trials, key=lambda t: t.validation_auc)
        model = self._estimator(self.chosen.settings, self.chosen.iterations, early_stopping=False)
        self.model = model.fit(x, y)
        return self

    def _trial(
        self, settings: TreeSettings, x: np.ndarray, y: np.ndarray, x_val: np.ndarray, y_val: np.ndarray
    ) -> Trial:
        """Boost until the validation AUC stalls; the best round is the argmax of its validation scores."""
        model = self._estimator(settings, self.max_iter, early_stopping=True)
        model.fit(x, y, X_val=x_val, y_val=y_val)
        scores = np.asarray(model.validation_score_)
        best = int(np.argmax(scores[1:])) + 1  # scores[0] is before the first round
        return Trial(settings, best, float(scores[best]))

    def predict(self, frame: pl.DataFrame) -> np.ndarray:
        """Delay probability per row."""
        if self.model is None:
            raise RuntimeError("BoostedTrees.predict called before fit")
        return self.model.predict_proba(self._matrix(frame))[:, 1]

    def _fitted(self) -> Trial:
        if self.chosen is None:
            raise RuntimeError("BoostedTrees is not fitted")
        return self.chosen

    @property
    def iterations(self) -> int:
        """Boosting rounds of the chosen grid point (its best validation round)."""
        return self._fitted().iterations

    @property
    def validation_auc(self) -> float:
        """The chosen grid point's validation ROC AUC at its best round: what chose it."""
        return self._fitted().validation_auc

    @property
    def settings(self) -> dict[str, float | int]:
        """The chosen hyper-parameters, rounds included, for the leaderboard and the registry."""
        chosen = self._fitted()
        return {**chosen.settings.as_dict(), "iterations": chosen.iterations}
