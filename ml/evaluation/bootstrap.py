"""Paired day-block bootstrap of ROC AUC: how far a lead on one test split can be trusted.

Flights of one day share weather, holidays and knock-on delays, so rows are not
independent draws: resampling rows would make intervals far too narrow. The unit of
resampling is the test day. A resample draws the split's days with replacement and every
row of a drawn day counts as many times as its day was drawn; all models are scored on
the same resamples, so their differences are paired.

With weights constant within a day, the weighted AUC of a resample is a quadratic form in
the day multiplicities c: AUC(c) = c' M c / ((c' P)(c' N)), where M[d, e] counts the
(delayed flight of day d, on-time flight of day e) pairs ranked the right way (ties as
half), and P, N count delayed and on-time flights per day. M is built once per model from
one sort of its scores, after which a thousand resamples cost a (1000 x days x days)
product instead of a thousand sorts of the test split.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Interval:
    """A point estimate on the test split and its bootstrap percentile interval."""

    estimate: float
    low: float
    high: float


@dataclass(frozen=True)
class DayPairs:
    """One model's per-day counts, all its resampled AUCs need: M (`ordered`), P and N of the module docstring."""

    ordered: np.ndarray
    positives: np.ndarray
    negatives: np.ndarray

    def auc(self, multiplicities: np.ndarray) -> np.ndarray:
        """Weighted ROC AUC for each row of `multiplicities` (resamples x days)."""
        c = np.atleast_2d(multiplicities).astype(np.float64)
        pairs = (c @ self.positives) * (c @ self.negatives)
        if (pairs == 0).any():
            raise ValueError(
                f"{int((pairs == 0).sum())} resample(s) hold only one class: "
                "the test split needs more days with both delayed and on-time flights"
            )
        return ((c @ self.ordered) * c).sum(axis=1) / pairs


def day_pairs(y: np.ndarray, p: np.ndarray, day: np.ndarray, days: int) -> DayPairs:
    """M, P and N of one model; `day` holds each row's day index in [0, days).

    Per day e, each of its on-time flights is placed among the sorted delayed flights;
    a running count then says, for every delayed flight, how many of day e's on-time
    flights score below it (`right`) or at most as high (`left`): their sum counts a tie
    once, that is half a pair each way.
    """
    positive = y == 1
    order = np.argsort(p[positive], kind="stable")
    scores, pos_days = p[positive][order], day[positive][order]
    negatives, neg_days = p[~positive], day[~positive]
    ordered = np.empty((days, days), dtype=np.float64)
    for e in range(days):
        below = negatives[neg_days == e]
        twice = np.zeros(scores.size, dtype=np.float64)
        for side in ("left", "right"):
            placed = np.searchsorted(scores, below, side)
            twice += np.cumsum(np.bincount(placed, minlength=scores.size + 1))[: scores.size]
        ordered[:, e] = 0.5 * np.bincount(pos_days, weights=twice, minlength=days)
    return DayPairs(
        ordered=ordered,
        positives=np.bincount(pos_days, minlength=days).astype(np.float64),
        negatives=np.bincount(neg_days, minlength=days).astype(np.float64),
    )


def day_resamples(days: int, resamples: int, seed: int) -> np.ndarray:
    """How often each day is drawn in each resample (resamples x days): `days` draws with replacement."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(days, np.full(days, 1.0 / days), size=resamples)


def _percentiles(values: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(values, [tail, 1.0 - tail])
    return float(low), float(high)


@dataclass(frozen=True)
class PairedBootstrap:
    """ROC AUCs of several models on the test split (`point`) and on the same day resamples.

    `multiplicities[r, d]` is how often resample r drew day d, days in sorted order
    (`np.unique` of the day column).
    """

    point: dict[str, float]
    resampled: dict[str, np.ndarray]
    multiplicities: np.ndarray
    confidence: float
    seed: int

    @property
    def resamples(self) -> int:
        return int(self.multiplicities.shape[0])

    @property
    def days(self) -> int:
        return int(self.multiplicities.shape[1])

    def _known(self, *names: str) -> None:
        unknown = [n for n in names if n not in self.point]
        if unknown:
            raise KeyError(f"no bootstrap for {', '.join(unknown)} (models: {', '.join(self.point)})")

    def auc(self, name: str) -> Interval:
        self._known(name)
        return Interval(self.point[name], *_percentiles(self.resampled[name], self.confidence))

    def difference(self, name: str, other: str) -> Interval:
        """ROC AUC of `name` minus that of `other`, paired resample by resample."""
        self._known(name, other)
        diffs = self.resampled[name] - self.resampled[other]
        return Interval(self.point[name] - self.point[other], *_percentiles(diffs, self.confidence))


def paired_bootstrap(
    y: np.ndarray,
    days: np.ndarray,
    predictions: Mapping[str, np.ndarray],
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> PairedBootstrap:
    """ROC AUC of each model, with every model scored on the same `resamples` day resamples."""
    y, days = np.asarray(y), np.asarray(days)
    if not predictions:
        raise ValueError("no models to bootstrap: predictions is empty")
    if resamples < 1 or not 0.0 < confidence < 1.0:
        raise ValueError(f"need resamples >= 1 and 0 < confidence < 1, got {resamples} and {confidence}")
    lengths = {"labels": y.size, "days": days.size, **{n: np.asarray(p).size for n, p in predictions.items()}}
    if len(set(lengths.values())) != 1 or y.ndim != 1:
        raise ValueError(f"labels, days and predictions must be 1-d of one length, got {lengths}")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0/1")
    values, index = np.unique(days, return_inverse=True)
    draws = day_resamples(values.size, resamples, seed)
    point, resampled = {}, {}
    for name, p in predictions.items():
        scores = np.asarray(p, dtype=np.float64)
        if not np.isfinite(scores).all():
            raise ValueError(f"predictions of {name} hold NaN or infinite values")
        pairs = day_pairs(y, scores, index, values.size)
        point[name] = float(pairs.auc(np.ones(values.size))[0])
        resampled[name] = pairs.auc(draws)
    return PairedBootstrap(point, resampled, draws, confidence, seed)
