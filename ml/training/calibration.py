"""Temperature scaling: one number, fitted on the validation split, that makes probabilities honest.

A network trained with dropout and weight decay and stopped early is often over- or
under-confident; dividing its logit by a temperature fitted to minimise the validation
log loss fixes the confidence without moving the ranking (ROC AUC is unchanged). It is
one parameter, not an isotonic curve, because the validation split is one month of a
different season: a richer map would learn that month's level of delays, which the test
months do not share, while a temperature only learns how sharp the network should be.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import minimize_scalar

TEMPERATURE_BOUNDS = (0.05, 20.0)
"""A fitted temperature at either bound means the logits carry almost no signal, or far too much."""


def _log_loss_at(log_temperature: float, logits: np.ndarray, y: np.ndarray) -> float:
    z = logits / math.exp(log_temperature)
    # log(1 + e^z) - y z, written stably for both signs of z
    return float(np.mean(np.logaddexp(0.0, z) - y * z))


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The temperature T minimising the mean log loss of sigmoid(logits / T) against labels `y`."""
    logits, y = np.asarray(logits, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if logits.shape != y.shape or logits.ndim != 1 or logits.size == 0:
        raise ValueError(f"need equal-length 1-d logits and labels, got {logits.shape} and {y.shape}")
    if not np.isfinite(logits).all():
        raise ValueError(f"{int((~np.isfinite(logits)).sum())} validation logit(s) are not finite")
    if y.min() == y.max():
        raise ValueError(f"all {y.size} validation labels are {int(y[0])}: no calibration to fit")
    low, high = (math.log(b) for b in TEMPERATURE_BOUNDS)
    result = minimize_scalar(
        _log_loss_at, bounds=(low, high), args=(logits, y), method="bounded", options={"xatol": 1e-6}
    )
    return float(math.exp(result.x))
