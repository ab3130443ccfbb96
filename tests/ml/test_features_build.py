"""Feature days built from the lake, and the quality measures behind the feature checks."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from ml.features.build import LABEL_RATE_BOUNDS, NULL_RATE_LIMITS, build_feature_days, measure_quality
from ml.features.flight_features import FEATURE_SCHEMA, build_features, lookback_days
from ml.lake.delta import DeltaStore
from ml.lake.tables import BRONZE_FLIGHTS, BRONZE_PLANES, BRONZE_WEATHER, FEATURES_TABLE, landing_log_table
from ml.online.build import online_snapshot_from_lake, servable_first_day
from tests.ml.test_features_point_in_time import PLANES, D, flight, flights_frame, utc, weather_frame

OLD = D - dt.timedelta(days=lookback_days() + 1)


@pytest.fixture
def store(tmp_path: Path) -> DeltaStore:
    s = DeltaStore(str(tmp_path / "lake"))
    flights = flights_frame(
        [
            flight(OLD, 9, 60),  # before the trailing window: not read
            flight(D - dt.timedelta(days=1), 10, 30),
            flight(D, 1, 0),
            flight(D, 2, None),  # no outcome: scheduled, not a feature row
        ]
    )
    s.replace_days(BRONZE_FLIGHTS, flights, "flight_date", sorted(set(flights["flight_date"])), {})
    weather = weather_frame([(utc(D - dt.timedelta(days=1), 20), 3.0), (utc(D, 14), 1.0)])
    s.replace_days(BRONZE_WEATHER, weather, "obs_date", sorted(set(weather["obs_date"])), {})
    s.overwrite(BRONZE_PLANES, PLANES, {})
    return s


def test_feature_days_are_the_features_of_the_trailing_windows_read_from_bronze(store: DeltaStore) -> None:
    built = build_feature_days(store, [D])
    everything = build_features(store.read(BRONZE_FLIGHTS), store.read(BRONZE_WEATHER), PLANES, [D])
    assert built.frame.equals(everything)
    assert built.frame["carrier_flights_28d"].to_list() == [1]
    assert (built.scheduled, built.excluded_no_outcome) == (2, 1)


def quality_frame(
    labels: list[bool], temps: list[float | None], flights: list[int], days: list[dt.date] | None = None
) -> pl.DataFrame:
    n = len(labels)
    columns = {c: [0] * n for c in NULL_RATE_LIMITS}
    dates = pl.Series("flight_date", days or [D] * n, dtype=pl.Date)
    return pl.DataFrame({**columns, "temp": temps, "flight": flights, "is_delayed": labels}).with_columns(
        dates
    )


def test_quality_of_good_days_passes_every_measure() -> None:
    frame = quality_frame([True, False], [1.0, 2.0], [1, 2])
    quality = measure_quality(frame, FEATURE_SCHEMA)
    assert (quality.schema_problems, quality.duplicates, quality.null_rate_breaches) == ([], 0, {})
    assert quality.label_rate == 0.5 and quality.label_rate_within_bounds
    assert quality.label_rate_bounds == LABEL_RATE_BOUNDS
    assert set(quality.null_rates) == set(NULL_RATE_LIMITS)


def test_quality_reports_breaches_duplicates_schema_drift_and_label_rate() -> None:
    frame = quality_frame([True, True], [None, 2.0], [1, 1])
    drifted = {c: t for c, t in FEATURE_SCHEMA.items() if c != "temp"}
    quality = measure_quality(frame, drifted)
    assert quality.schema_problems == ["missing column temp"]
    assert quality.duplicates == 2
    assert quality.null_rate_breaches == {"temp": 0.5}
    assert quality.label_rate == 1.0 and not quality.label_rate_within_bounds


def test_the_label_rate_is_judged_per_day_so_a_bad_day_cannot_hide_in_a_range() -> None:
    # Day 1 has 4 of 5 delayed (0.8, over the bound); the range's mean, 5 of 12, is fine.
    labels = [True] * 4 + [False] + [True] + [False] * 6
    days = [D] * 5 + [D + dt.timedelta(days=1)] * 7
    quality = measure_quality(quality_frame(labels, [1.0] * 12, list(range(12)), days), FEATURE_SCHEMA)
    low, high = LABEL_RATE_BOUNDS
    assert low <= quality.label_rate <= high
    assert quality.label_rates == {D.isoformat(): 0.8, (D + dt.timedelta(days=1)).isoformat(): 0.1429}
    assert quality.label_rate_breaches == {D.isoformat(): 0.8}
    assert not quality.label_rate_within_bounds


def test_missing_days_of_the_window_are_named_and_days_before_the_partitions_are_not(
    store: DeltaStore,
) -> None:
    landed = sorted({D - dt.timedelta(days=1), D})
    for table in (BRONZE_FLIGHTS, BRONZE_WEATHER):
        log = pl.DataFrame({"day": landed}, schema={"day": pl.Date})
        store.replace_days(landing_log_table(table), log, "day", landed, {})
    built = build_feature_days(store, [D], earliest=D - dt.timedelta(days=3))
    assert built.missing_window_days == {
        BRONZE_FLIGHTS: [(D - dt.timedelta(days=n)).isoformat() for n in (3, 2)]
    }
    assert build_feature_days(store, [D], earliest=D - dt.timedelta(days=1)).missing_window_days == {}


def test_an_empty_frame_has_label_rate_zero() -> None:
    quality = measure_quality(quality_frame([], [], []).cast({"is_delayed": pl.Boolean}), FEATURE_SCHEMA)
    assert quality.label_rate == 0.0


def test_the_online_snapshot_ends_at_the_last_feature_day(store: DeltaStore) -> None:
    features = build_feature_days(store, [D]).frame
    store.replace_days(FEATURES_TABLE, features.clear(), "flight_date", [D], {})
    with pytest.raises(ValueError, match="has no rows"):
        online_snapshot_from_lake(store, 7)
    store.replace_days(FEATURES_TABLE, features, "flight_date", [D], {})
    snapshot = online_snapshot_from_lake(store, 7)
    assert (snapshot.first_day, snapshot.last_day) == (D - dt.timedelta(days=5), D)
    assert snapshot.sources == {t: store.version(t) for t in snapshot.sources}
    assert set(snapshot.sources) == {BRONZE_FLIGHTS, BRONZE_WEATHER, BRONZE_PLANES, FEATURES_TABLE}


def test_servable_days_end_on_the_day_after_the_last_day() -> None:
    assert servable_first_day(D, 1) == D + dt.timedelta(days=1)
    assert servable_first_day(D, 92) == D + dt.timedelta(days=1) - dt.timedelta(days=91)
