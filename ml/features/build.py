"""Build a range of feature days from the lake, and measure them for the asset checks.

A day's features read its own flights plus a bounded trailing window of bronze flights
and one previous day of weather, so any range of days can be built alone.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

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
from ml.lake.tables import BRONZE_FLIGHTS, BRONZE_PLANES, BRONZE_WEATHER, landing_log_table

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
    missing_window_days: dict[str, list[str]]
    """Per bronze table, the days its windows read that have not landed (ISO dates): the
    features of those days' neighbours were built without them and are rebuilt when they land."""
    sources: dict[str, int] = field(default_factory=dict)
    """The version of each bronze table read (the lineage ledger of the features commit)."""

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
    """Over all the built days."""
    label_rates: dict[str, float]
    """Per built day (ISO date): what the check judges, so one bad day cannot hide in a range's mean."""
    label_rate_bounds: tuple[float, float] = LABEL_RATE_BOUNDS
    rows: int = 0
    """Feature rows measured."""

    @classmethod
    def combine(cls, parts: Sequence[FeatureQuality]) -> FeatureQuality:
        """The quality of a run's slices (disjoint days) as if measured on all their rows at once.

        Keys hold the flight's day, so no duplicate spans two slices; rates are weighted by rows.
        """
        rows = sum(p.rows for p in parts)

        def weighted(rate: Callable[[FeatureQuality], float]) -> float:
            return sum(rate(p) * p.rows for p in parts) / rows if rows else 0.0

        rates = {c: weighted(lambda p, c=c: p.null_rates[c]) for c in parts[0].null_rates}
        return cls(
            schema_problems=parts[-1].schema_problems,
            duplicates=sum(p.duplicates for p in parts),
            null_rates=rates,
            null_rate_breaches=rate_breaches(rates, NULL_RATE_LIMITS),
            label_rate=weighted(lambda p: p.label_rate),
            label_rates={day: rate for p in parts for day, rate in p.label_rates.items()},
            label_rate_bounds=parts[-1].label_rate_bounds,
            rows=rows,
        )

    @property
    def label_rate_breaches(self) -> dict[str, float]:
        low, high = self.label_rate_bounds
        return {day: rate for day, rate in self.label_rates.items() if not low <= rate <= high}

    @property
    def label_rate_within_bounds(self) -> bool:
        return not self.label_rate_breaches


def build_feature_days(
    store: DeltaStore, days: Sequence[dt.date], earliest: dt.date | None = None
) -> FeatureDays:
    """One row per flight of `days` with a known outcome, from bronze and its trailing windows.

    Days of the windows before `earliest` (the first day of the partitions) cannot land
    and are not counted as missing.
    """
    first, last = days[0], days[-1]
    flights_from = first - dt.timedelta(days=lookback_days())
    weather_from = first - dt.timedelta(days=WEATHER_LOOKBACK_DAYS)
    sources = {t: int(store.table(t).version()) for t in (BRONZE_FLIGHTS, BRONZE_WEATHER, BRONZE_PLANES)}
    history = store.read_days(BRONZE_FLIGHTS, "flight_date", flights_from, last, sources[BRONZE_FLIGHTS])
    observed = store.read_days(BRONZE_WEATHER, "obs_date", weather_from, last, sources[BRONZE_WEATHER])
    frame = build_features(history, observed, store.read(BRONZE_PLANES, sources[BRONZE_PLANES]), days)
    scheduled = history.select(pl.col("flight_date").is_between(first, last).sum()).item()
    missing = {
        table: _not_landed(store, table, max(start, earliest or start), last)
        for table, start in ((BRONZE_FLIGHTS, flights_from), (BRONZE_WEATHER, weather_from))
    }
    return FeatureDays(frame, scheduled, {table: days for table, days in missing.items() if days}, sources)


def _not_landed(store: DeltaStore, table: str, first: dt.date, last: dt.date) -> list[str]:
    """Days of [first, last] without a row in the table's landing log (an empty day has one)."""
    log = landing_log_table(table)
    landed = set(store.read_days(log, "day", first, last)["day"]) if store.exists(log) else set()
    span = (last - first).days + 1
    every = (first + dt.timedelta(days=n) for n in range(max(span, 0)))
    return [day.isoformat() for day in every if day not in landed]


def measure_quality(frame: pl.DataFrame, stored_schema: Mapping[str, pl.DataType]) -> FeatureQuality:
    """`stored_schema` is the table's as written, so a type the Delta round trip changes is caught."""
    rates = null_rates(frame, NULL_RATE_LIMITS)
    return FeatureQuality(
        schema_problems=schema_problems(stored_schema, FEATURE_SCHEMA),
        duplicates=duplicate_keys(frame, KEY_COLUMNS),
        null_rates=rates,
        null_rate_breaches=rate_breaches(rates, NULL_RATE_LIMITS),
        label_rate=float(frame[LABEL].mean() or 0.0),
        label_rates=_label_rates(frame),
        rows=frame.height,
    )


def _label_rates(frame: pl.DataFrame) -> dict[str, float]:
    rates = frame.group_by("flight_date").agg(pl.col(LABEL).cast(pl.Float64).mean()).sort("flight_date")
    return {day.isoformat(): round(float(rate), 4) for day, rate in rates.iter_rows()}
