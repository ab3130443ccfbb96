"""Moments of a numeric column, taken batch by batch and merged: statistics without the whole column.

The preprocessor's means, standard deviations, ranges and skewness come from these, so a
train split of any size is fitted with one batch in memory. Each batch's moments are numpy's
two-pass ones (on a single batch they are `np.mean` and `np.std` to the bit); batches merge by
the pairwise update of Chan, Golub and LeVeque, and Pébay's for the third moment, which loses
nothing to cancellation the way sums of powers would: a year fitted batch by batch matches the
in-memory statistics to about 1e-15, relative. Batches are merged in file order, so the same
file gives the same bits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Moments:
    """Count, mean, sums of squared and cubed deviations from it, and the range of some values."""

    count: int = 0
    mean: float = 0.0
    m2: float = 0.0
    m3: float = 0.0
    low: float = math.inf
    high: float = -math.inf

    @classmethod
    def of(cls, values: np.ndarray) -> Moments:
        """The moments of a float64 array without NaN, as numpy computes its mean and std."""
        if values.size == 0:
            return cls()
        mean = values.mean()
        deviations = values - mean
        squares = deviations * deviations
        return cls(
            count=int(values.size),
            mean=float(mean),
            m2=float(squares.sum()),
            m3=float((squares * deviations).sum()),
            low=float(values.min()),
            high=float(values.max()),
        )

    def merge(self, other: Moments) -> Moments:
        """The moments of both sets of values together."""
        if other.count == 0:
            return self
        if self.count == 0:
            return other
        a, b = self.count, other.count
        n = a + b
        delta = other.mean - self.mean
        return Moments(
            count=n,
            mean=self.mean + delta * b / n,
            m2=self.m2 + other.m2 + delta * delta * a * b / n,
            m3=self.m3
            + other.m3
            + delta**3 * a * b * (a - b) / (n * n)
            + 3.0 * delta * (a * other.m2 - b * self.m2) / n,
            low=min(self.low, other.low),
            high=max(self.high, other.high),
        )

    @property
    def std(self) -> float:
        """Population standard deviation (numpy's default, ddof=0)."""
        return math.sqrt(self.m2 / self.count) if self.count else 0.0

    @property
    def skewness(self) -> float:
        """Sample skewness, the mean cubed standardized deviation; 0 without spread."""
        std = self.std
        return (self.m3 / self.count) / std**3 if std > 0 else 0.0
