"""When to retrain: the policy the retraining sensor applies, as a pure decision.

One training at a time: while a training run is unfinished the answer is to wait, and
the monitoring signals stay unhandled for the next look. One retrain per trigger: the
run key names the trigger and the data the run would train on (the cutoff day and the
feature table's Delta version), so the same trigger over the same data makes one run
however often the sensor looks, and new data makes a new one. Every unhandled signal is
answered by that one run.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

SHOWN_SIGNALS = 3
"""Signals whose detail a reason spells out; the rest are counted."""


@dataclass(frozen=True)
class DriftSignal:
    """A monitoring breach that asks for a new model; `key` is unique per breach episode."""

    key: str
    detail: str


@dataclass(frozen=True)
class TrainingData:
    """What a training run started now would read: features up to `cutoff`, at Delta version `features_version`."""

    cutoff: dt.date
    features_version: int

    @property
    def key(self) -> str:
        return f"cutoff-{self.cutoff.isoformat()}:features-v{self.features_version}"


@dataclass(frozen=True)
class Decision:
    retrain: bool
    reason: str
    trigger: str = ""
    """`drift` or `new-days` when `retrain`."""
    data: TrainingData | None = None
    signals: tuple[DriftSignal, ...] = ()
    """The signals this run answers: all that were unhandled."""

    @property
    def run_key(self) -> str:
        """`train:cutoff-{day}:features-v{version}`, empty unless `retrain`: keyed by the data alone,
        so a second trigger (a drift signal during a new-days training) on the same data starts no
        second training of identical rows; the trigger is a tag."""
        return f"train:{self.data.key}" if self.retrain and self.data else ""


def _signals_reason(drift: Sequence[DriftSignal]) -> str:
    shown = "; ".join(s.detail for s in drift[:SHOWN_SIGNALS])
    more = f"; and {len(drift) - SHOWN_SIGNALS} more" if len(drift) > SHOWN_SIGNALS else ""
    return f"{len(drift)} monitoring signal(s): {shown}{more}"


def decide(
    feature_days: Sequence[dt.date],
    last_cutoff: dt.date | None,
    new_days_threshold: int,
    drift: Sequence[DriftSignal],
    data: TrainingData | None,
    unfinished_training: Sequence[str] = (),
) -> Decision:
    """Retrain on monitoring signals, or once `new_days_threshold` feature days follow the last cutoff.

    `data` is what a run would train on (None before there is a cutoff:
    `ml.training.training_set.settled_cutoff`);
    only new days up to its cutoff count, those the run would train on;
    `unfinished_training` describes the training runs queued or running, which are
    waited for first. A threshold of 0 turns the new-days rule off.
    """
    if unfinished_training:
        runs = ", ".join(unfinished_training)
        waiting = f"; {len(drift)} signal(s) wait for it" if drift else ""
        return Decision(False, f"a training run is queued or running: {runs}{waiting}")
    if not feature_days:
        return Decision(False, "no feature days yet")
    if data is None:
        return Decision(
            False, "no cutoff yet: too few consecutive feature days for the validation and test days"
        )
    if drift:
        return Decision(True, _signals_reason(drift), "drift", data, tuple(drift))
    new = {d for d in feature_days if (last_cutoff is None or d > last_cutoff) and d <= data.cutoff}
    if new_days_threshold <= 0:
        return Decision(False, "the new-days rule is off")
    if len(new) < new_days_threshold:
        return Decision(
            False, f"{len(new)} new feature day(s) since cutoff {last_cutoff}, need {new_days_threshold}"
        )
    since = "no training set yet" if last_cutoff is None else f"cutoff {last_cutoff}"
    return Decision(True, f"{len(new)} new feature day(s) since {since}", "new-days", data)
