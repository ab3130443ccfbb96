"""One monitoring run's result: what the drift and live-performance assets read from the lake and write back.

`ml.monitoring.drift` and `ml.monitoring.live_performance` compute on frames they are
given; this module picks the frames (the newest window of the lake, the training split
the champion learned from), runs those computations and assembles the table rows a run
replaces, so the assets only write, signal and report. It writes nothing itself: the
write carries the run's commit metadata, which only the asset knows.

Both windows end at the newest day found in the lake, not at today's date, so no clock
is read here. Before there is anything to judge (no training set to compare with, no
prediction logged yet) a report is `NothingToMonitor`, which says why: a platform
starting from an empty lake monitors before its first model serves, and that is not a
failure.

A breach's signal is keyed by its episode (`ml.monitoring.signals`), found in the
table's history after the run's rows are written: `drift_episode` and
`live_performance_episode` read it back.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from ml.features.flight_features import CATEGORICAL_FEATURES, NUMERIC_FEATURES
from ml.lake.delta import DeltaStore
from ml.lake.schemas import BRONZE_FLIGHTS_SCHEMA
from ml.lake.tables import (
    BRONZE_FLIGHTS,
    DRIFT_TABLE,
    FEATURES_TABLE,
    LIVE_PERFORMANCE_TABLE,
    PREDICTIONS_TABLE,
)
from ml.monitoring.drift import Thresholds, breaches, drift_table
from ml.monitoring.live_performance import (
    PerformanceLimits,
    daily_performance,
    match_outcomes,
    performance_breaches,
)
from ml.monitoring.signals import episode_start, signal_key
from ml.registry.model_registry import ModelRegistry
from ml.training.training_set import MANIFEST, read_manifest, read_split

OUTCOME_COUNTS = ("predictions", "pending", "unmatched", "ambiguous", "cancelled", "diverted", "outcomes")
"""Columns of the daily performance table summed over the window for the run's metadata."""


@dataclass(frozen=True)
class NothingToMonitor:
    """Why a monitoring run had nothing to judge; the asset reports it and its check passes."""

    reason: str


@dataclass(frozen=True)
class Episode:
    """The breach episode a signal is raised for: its first observed day and the signal's key."""

    start: dt.date
    key: str


def _champion_version(store: DeltaStore) -> int | None:
    champion = ModelRegistry(store).champion()
    return champion.version if champion is not None else None


@dataclass(frozen=True)
class DriftReport:
    """The drift table of the newest `first..last` feature days against the training split cut at `cutoff`."""

    first: dt.date
    last: dt.date
    cutoff: dt.date
    champion_version: int | None
    reference_rows: int
    current_rows: int
    table: pl.DataFrame
    over: pl.DataFrame
    """Breaching features, worst first."""
    frame: pl.DataFrame
    """`table` with the run's `as_of`, window and reference columns and a `breach` flag: the rows written."""

    @property
    def breach_summary(self) -> pl.DataFrame:
        return self.over.select("feature", "metric", "value", "threshold")

    @property
    def summary(self) -> dict[str, object]:
        """The run's plain numbers, in the order the asset reports them."""
        return {
            "window": f"{self.first}..{self.last}",
            "reference_cutoff": self.cutoff.isoformat(),
            "reference_rows": self.reference_rows,
            "current_rows": self.current_rows,
        }


def drift_report(
    store: DeltaStore,
    training_set: Path,
    window_days: int,
    thresholds: Thresholds,
    bins: int,
    excluded_features: Collection[str],
) -> DriftReport | NothingToMonitor:
    """PSI and KS per feature: the newest `window_days` of `FEATURES_TABLE` against the snapshot's train split."""
    if not (training_set / MANIFEST).exists():
        return NothingToMonitor(
            f"no training set yet at {training_set}: nothing to compare recent features with"
        )
    cutoff = dt.date.fromisoformat(read_manifest(training_set)["cutoff"])
    reference = read_split(training_set, "train")
    last = store.last_day(FEATURES_TABLE, "flight_date")
    if last is None:
        raise ValueError(f"{FEATURES_TABLE} has no rows: nothing recent to compare with the training split")
    first = last - dt.timedelta(days=window_days - 1)
    current = store.read_days(FEATURES_TABLE, "flight_date", first, last)
    excluded = set(excluded_features)
    table = drift_table(
        reference,
        current,
        [c for c in NUMERIC_FEATURES if c not in excluded],
        [c for c in CATEGORICAL_FEATURES if c not in excluded],
        bins,
    )
    over = breaches(table, thresholds)
    frame = table.with_columns(
        pl.lit(last, pl.Date).alias("as_of"),
        pl.lit(first, pl.Date).alias("window_first"),
        pl.lit(cutoff, pl.Date).alias("reference_cutoff"),
        pl.col("feature").is_in(over["feature"].implode()).alias("breach"),
    )
    version = _champion_version(store)
    return DriftReport(first, last, cutoff, version, reference.height, current.height, table, over, frame)


def drift_episode(store: DeltaStore, champion_version: int | None) -> Episode | None:
    """The episode of the newest breached run in `DRIFT_TABLE`: each `as_of` is one observation.

    Runs count whichever training set they compared with, so a retraining that leaves the
    drift standing does not open a new episode; a new champion's signal has its own key.
    """
    runs = store.scan(DRIFT_TABLE).group_by("as_of").agg(pl.col("breach").any()).collect()
    start = episode_start(runs.iter_rows())
    return None if start is None else Episode(start, signal_key(DRIFT_TABLE, champion_version, start))


@dataclass(frozen=True)
class LivePerformanceReport:
    """Realized quality per flight day of `first..last`: the prediction log matched with the flights that landed."""

    first: dt.date
    last: dt.date
    champion_version: int | None
    predictions_logged: int
    duplicate_predictions: int
    """Logged answers to a flight the same model version answered again later: only the latest counts."""
    table: pl.DataFrame
    over: pl.DataFrame
    """Breaching scored days (of the champion, when there is one), worst first."""
    frame: pl.DataFrame
    """`table` with a `breach` flag: the rows written."""
    days: list[dt.date]
    """The flight days in `frame`, sorted: the days the run replaces."""
    totals: Mapping[str, int]
    """`OUTCOME_COUNTS` summed over the window."""

    @property
    def days_scored(self) -> int:
        return self.table.filter(pl.col("status") == "scored").height

    @property
    def days_not_scored(self) -> int:
        return self.table.height - self.days_scored

    @property
    def breach_summary(self) -> pl.DataFrame:
        return self.over.select("flight_date", "model_version", "metric", "value", "threshold")

    @property
    def summary(self) -> dict[str, object]:
        """The run's plain numbers, in the order the asset reports them."""
        return {
            "window": f"{self.first}..{self.last}",
            "predictions_logged": self.predictions_logged,
            "duplicate_predictions": self.duplicate_predictions,
            **self.totals,
            "days_scored": self.days_scored,
            "days_not_scored": self.days_not_scored,
        }


def live_performance_report(
    store: DeltaStore,
    lookback_days: int,
    min_outcomes: int,
    bins: int,
    limits: PerformanceLimits,
) -> LivePerformanceReport | NothingToMonitor:
    """The newest `lookback_days` of the prediction log scored per day against `bronze/flights`."""
    last = store.last_day(PREDICTIONS_TABLE, "flight_date") if store.exists(PREDICTIONS_TABLE) else None
    if last is None:
        return NothingToMonitor(
            f"no predictions logged at {store.uri(PREDICTIONS_TABLE)}: no model server has answered yet"
        )
    first = last - dt.timedelta(days=lookback_days - 1)
    predictions = store.read_days(PREDICTIONS_TABLE, "flight_date", first, last)
    outcomes = (
        store.read_days(BRONZE_FLIGHTS, "flight_date", first, last)
        if store.exists(BRONZE_FLIGHTS)
        else pl.DataFrame(schema=BRONZE_FLIGHTS_SCHEMA)
    )
    matched = match_outcomes(predictions, outcomes)
    table = daily_performance(matched, min_outcomes, bins)
    version = _champion_version(store)
    over = performance_breaches(table, limits.auc_floor, limits.max_calibration_error, version)
    breached = over.select("flight_date", "model_version")
    frame = table.join(
        breached.with_columns(pl.lit(True).alias("breach")), on=["flight_date", "model_version"], how="left"
    ).with_columns(pl.col("breach").fill_null(False))
    days = sorted(set(frame["flight_date"].to_list()))
    totals = {name: int(table[name].sum()) for name in OUTCOME_COUNTS}
    return LivePerformanceReport(
        first=first,
        last=last,
        champion_version=version,
        predictions_logged=predictions.height,
        duplicate_predictions=predictions.height - matched.height,
        table=table,
        over=over,
        frame=frame,
        days=days,
        totals=totals,
    )


def live_performance_episode(store: DeltaStore, model_version: int) -> Episode | None:
    """The episode of the model's newest breached day in `LIVE_PERFORMANCE_TABLE`: each scored day is one observation.

    A day that is not scored (pending, too few outcomes) is not an observation.
    """
    days = (
        store.scan(LIVE_PERFORMANCE_TABLE)
        .filter(pl.col("model_version") == model_version, pl.col("status") == "scored")
        .select("flight_date", "breach")
        .collect()
    )
    start = episode_start(days.iter_rows())
    return None if start is None else Episode(start, signal_key(LIVE_PERFORMANCE_TABLE, model_version, start))
