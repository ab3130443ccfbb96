"""One monitoring run's result: what the drift and live-performance assets read from the lake and write back.

`ml.monitoring.drift` and `ml.monitoring.live_performance` compute on frames they are
given; this module picks the frames (the newest window of the lake, the train split of
the reference `ml.monitoring.reference` found: the champion's training set), runs those
computations and assembles the table rows a run replaces, so the assets only write,
signal and report. It writes nothing itself: the
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
from typing import Any

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
from ml.monitoring.drift import Calibration, ReferenceProfile, breaches, drift_table, fit_reference
from ml.monitoring.live_performance import (
    PerformanceLimits,
    daily_performance,
    match_outcomes,
    performance_breaches,
)
from ml.monitoring.reference import Reference
from ml.monitoring.signals import episode_start, signal_key
from ml.registry.model_registry import ModelRegistry
from ml.training.training_set import read_manifest, read_split

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
    """The drift table of the newest `first..last` feature days against the reference's train split."""

    first: dt.date
    last: dt.date
    cutoff: dt.date
    reference: Reference
    reference_rows: int
    current_rows: int
    profile: ReferenceProfile
    not_compared: Mapping[str, str]
    """Features of the reference left out, and why."""
    table: pl.DataFrame
    over: pl.DataFrame
    """Breaching features, worst first."""
    frame: pl.DataFrame
    """`table` with the run's `as_of`, window and reference columns: the rows written."""

    @property
    def champion_version(self) -> int | None:
        return self.reference.champion_version

    @property
    def not_judged(self) -> int:
        """Features without a limit: the reference has too few blocks to set one."""
        return self.table.filter(pl.col("threshold").is_null()).height

    @property
    def breach_summary(self) -> pl.DataFrame:
        return self.over.select("feature", "metric", "value", "threshold", "threshold_basis")

    @property
    def feature_summary(self) -> pl.DataFrame:
        """Per feature what a reader needs to see why it did or did not fire, rounded for the UI."""
        return self.table.select(
            "feature",
            "compared_as",
            "metric",
            pl.col("value").round_sig_figs(4),
            pl.col("threshold").round_sig_figs(4),
            "breach",
            "threshold_basis",
            pl.col("p_value").round_sig_figs(3),
            pl.col("ks").round(4),
            pl.col("current_null_rate").round(4),
            pl.col("out_of_range_rate").round(4),
            pl.col("unseen_rate").round(4),
        )

    @property
    def calibration_summary(self) -> str:
        """How every limit of the run was set, in one sentence."""
        c = self.profile.calibration
        which = "largest" if c.quantile == 1.0 else f"q{c.quantile:g}"
        return (
            f"{self.profile.blocks} reference blocks of {self.profile.block_days} days after {c.warmup_days} "
            f"warm-up days; limit = {c.factor:g} x the {which} block statistic, at least PSI {c.psi_floor:g} "
            f"(numeric) or JS {c.js_floor:g} (categorical, which also needs chi-square p < {c.alpha:g}); "
            f"fewer than {c.min_blocks} blocks: not judged"
        )

    @property
    def summary(self) -> dict[str, object]:
        """The run's plain numbers, in the order the asset reports them."""
        return {
            "window": f"{self.first}..{self.last}",
            "reference": self.reference.origin,
            "reference_md5": self.reference.md5,
            "reference_cutoff": self.cutoff.isoformat(),
            "reference_rows": self.reference_rows,
            "current_rows": self.current_rows,
            "calibration": self.calibration_summary,
            "features_not_judged": self.not_judged,
        }


def compared_features(
    manifest: Mapping[str, Any], current_columns: Collection[str], excluded: Mapping[str, str]
) -> tuple[list[str], list[str], dict[str, str]]:
    """Numeric and categorical features to compare, and the reference's others with why they are not.

    The reference's manifest names the features its model learned from (the code's lists
    when an old manifest has none), so a feature added or dropped since is not compared
    against a training set that lacks it.
    """
    numeric = [str(c) for c in manifest.get("numeric", NUMERIC_FEATURES)]
    categorical = [str(c) for c in manifest.get("categorical", CATEGORICAL_FEATURES)]
    not_compared: dict[str, str] = {}
    for feature in (*numeric, *categorical):
        if feature in excluded:
            not_compared[feature] = excluded[feature]
        elif feature not in current_columns:
            not_compared[feature] = f"missing from {FEATURES_TABLE}: the feature table no longer has it"
    numeric = [c for c in numeric if c not in not_compared]
    return numeric, [c for c in categorical if c not in not_compared], not_compared


def check_drift_table(store: DeltaStore, frame: pl.DataFrame) -> None:
    """Fail with the difference when `DRIFT_TABLE` holds the columns of an older monitor.

    A predicate overwrite cannot change a Delta table's schema; the message says what to do.
    """
    if not store.exists(DRIFT_TABLE):
        return
    have = set(store.scan(DRIFT_TABLE).collect_schema().names())
    want = set(frame.columns)
    if have != want:
        raise ValueError(
            f"{store.uri(DRIFT_TABLE)} has the columns of an older drift monitor (missing: "
            f"{', '.join(sorted(want - have)) or '-'}; no longer written: {', '.join(sorted(have - want)) or '-'}): "
            "move the table aside (its history stays readable there) and run monitoring/drift again"
        )


def drift_report(
    store: DeltaStore,
    reference: Reference | None,
    on_disk: Path,
    window_days: int,
    calibration: Calibration,
    bins: int,
    excluded: Mapping[str, str],
) -> DriftReport | NothingToMonitor:
    """The newest `window_days` of `FEATURES_TABLE` against the reference's train split, limits calibrated on it.

    `reference` is `find_reference`'s answer (None: no champion and no training set at
    `on_disk`); `excluded` maps features not compared to the reason.
    """
    if reference is None:
        return NothingToMonitor(
            f"no training set yet at {on_disk} and no champion: nothing to compare recent features with"
        )
    manifest = read_manifest(reference.folder)
    cutoff = dt.date.fromisoformat(manifest["cutoff"])
    last = store.last_day(FEATURES_TABLE, "flight_date")
    if last is None:
        raise ValueError(f"{FEATURES_TABLE} has no rows: nothing recent to compare with the training split")
    first = last - dt.timedelta(days=window_days - 1)
    current = store.read_days(FEATURES_TABLE, "flight_date", first, last)
    numeric, categorical, not_compared = compared_features(manifest, current.columns, excluded)
    train = read_split(reference.folder, "train")
    block_days = current["flight_date"].n_unique()
    profile = fit_reference(train, numeric, categorical, calibration, block_days, bins)
    table = drift_table(profile, current)
    frame = table.with_columns(
        pl.lit(last, pl.Date).alias("as_of"),
        pl.lit(first, pl.Date).alias("window_first"),
        pl.lit(cutoff, pl.Date).alias("reference_cutoff"),
        pl.lit(reference.md5, pl.String).alias("reference_md5"),
    )
    check_drift_table(store, frame)
    return DriftReport(
        first=first,
        last=last,
        cutoff=cutoff,
        reference=reference,
        reference_rows=train.height,
        current_rows=current.height,
        profile=profile,
        not_compared=not_compared,
        table=table,
        over=breaches(table),
        frame=frame,
    )


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
