"""When to retrain: the policy the retraining sensor applies, as a pure decision."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class DriftSignal:
    """A monitoring breach that asks for a new model; `key` is unique per breach."""

    key: str
    detail: str


@dataclass(frozen=True)
class Decision:
    retrain: bool
    reason: str
    run_key: str = ""


def decide(
    feature_days: Sequence[dt.date],
    last_cutoff: dt.date | None,
    new_days_threshold: int,
    drift: Sequence[DriftSignal],
) -> Decision:
    """Retrain on a drift breach, or once `new_days_threshold` feature days follow the last cutoff.

    A threshold of 0 turns the new-days rule off. The run key names what triggered it, so
    one trigger makes one run however often the sensor looks.
    """
    if drift:
        first = drift[0]
        return Decision(True, f"drift: {first.detail}", f"drift:{first.key}")
    if not feature_days:
        return Decision(False, "no feature days yet")
    latest = max(feature_days)
    new = {d for d in feature_days if last_cutoff is None or d > last_cutoff}
    if new_days_threshold <= 0:
        return Decision(False, "the new-days rule is off")
    if len(new) < new_days_threshold:
        return Decision(
            False, f"{len(new)} new feature day(s) since cutoff {last_cutoff}, need {new_days_threshold}"
        )
    since = "no training set yet" if last_cutoff is None else f"cutoff {last_cutoff}"
    return Decision(True, f"{len(new)} new feature day(s) since {since}", f"new-days:{latest}")
