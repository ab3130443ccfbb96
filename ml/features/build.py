"""Build a range of feature days from the lake, and measure them for the asset checks.

A day's features read its own flights plus a bounded trailing window of bronze flights
and one previous day of weather, so any range of days can be built alone.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import polars as pl

from ml.features.flight_features import (
    FEATURE_SCHEMA,
    KEY_COLUMNS,
    LABEL,
    WEATHER_LOOKBACK_DAYS,
    build_features,
    lookback_days,
)
from ml.lake.delta import DeltaStore
from ml.lake.quality import duplicate_keys, null_rates, rate_breaches, schema_problems
from ml.lake.tables import BRONZE_FLIGHTS, BRONZE_PLANES, BRONZE_WEATHER

NULL_RATE_LIMITS = {
    **dict.fromkeys(KEY_COLUMNS, 0.0),
    "sched_dep_utc": 0.0,
    "dest": 0.0,
    "distance": 0.0,
    "temp": 0.05,
    "carrier_delay_rate_28d": 0.05,
    "plane_age": 0.25,
}
LABEL_RATE_BOUNDS = (0.02, 0.75)


@dataclass(frozen=True)
class FeatureDays:
    frame: pl.DataFrame
    scheduled: int
    """Flights scheduled on the built days, with or without a known outcome."""

    @property
    def excluded_no_outcome(self) -> int:
        return self.scheduled - self.frame.height


@dataclass(frozen=True)
class FeatureQuality:
    schema_problems: list[str]
    duplicates: int
    null_rates: dict[str, float]
    null_rate_breaches: dict[str, float]
    label_rate: float
    label_rate_bounds: tuple[float, float] = LABEL_RATE_BOUNDS

    @property
    def label_rate_within_bounds(self) -> bool:
        low, high = self.label_rate_bounds
        return low <= self.label_rate <= high


def build_feature_days(store: DeltaStore, days: Sequence[dt.date]) -> FeatureDays:
    """One row per flight of `days` with a known outcome, from bronze and its trailing windows."""
    first, last = days[0], days[-1]
    history = store.read_days(BRONZE_FLIGHTS, "flight_date", first - dt.timedelta(days=lookback_days()), last)
    observed = store.read_days(
        BRONZE_WEATHER, "obs_date", first - dt.timedelta(days=WEATHER_LOOKBACK_DAYS), last
    )
    frame = build_features(history, observed, store.read(BRONZE_PLANES), days)
    scheduled = history.filter(pl.col("flight_date").is_between(first, last)).height
    return FeatureDays(frame, scheduled)


def measure_quality(frame: pl.DataFrame, stored_schema: Mapping[str, pl.DataType]) -> FeatureQuality:
    """`stored_schema` is the table's as written, so a type the Delta round trip changes is caught."""
    rates = null_rates(frame, NULL_RATE_LIMITS)
    return FeatureQuality(
        schema_problems=schema_problems(stored_schema, FEATURE_SCHEMA),
        duplicates=duplicate_keys(frame, KEY_COLUMNS),
        null_rates=rates,
        null_rate_breaches=rate_breaches(rates, NULL_RATE_LIMITS),
        label_rate=float(frame[LABEL].mean() or 0.0),
    )
