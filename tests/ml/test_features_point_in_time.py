"""Point-in-time rules of the feature transform, on small frames built by hand."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import polars as pl

from ml.features.build import build_feature_days
from ml.features.flight_features import FEATURE_SCHEMA, build_features
from ml.lake.delta import DeltaStore
from ml.lake.schemas import BRONZE_FLIGHTS_SCHEMA, BRONZE_WEATHER_SCHEMA
from ml.lake.tables import BRONZE_FLIGHTS, BRONZE_PLANES, BRONZE_WEATHER
from ml.settings import NEW_YORK

D = dt.date(2013, 3, 20)


def utc(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=dt.UTC)


def flight(day: dt.date, number: int, arr_delay: int | None, hour_utc: int = 14, minute: int = 15) -> dict:
    return {
        "flight_date": day,
        "year": day.year,
        "month": day.month,
        "day": day.day,
        "sched_dep_time": (hour_utc - 4) * 100 + minute,
        "sched_arr_time": 1500,
        "arr_delay": arr_delay,
        "carrier": "UA",
        "flight": number,
        "tailnum": "N1",
        "origin": "EWR",
        "dest": "ORD",
        "distance": 719,
        "hour": hour_utc - 4,
        "minute": minute,
        "time_hour": utc(day, hour_utc),
        "sched_dep_utc": utc(day, hour_utc, minute),
    }


def flights_frame(rows: list[dict]) -> pl.DataFrame:
    frame = pl.DataFrame(rows)
    missing = [c for c in BRONZE_FLIGHTS_SCHEMA if c not in frame.columns]
    frame = frame.with_columns([pl.lit(None).alias(c) for c in missing])
    return frame.select([pl.col(c).cast(t) for c, t in BRONZE_FLIGHTS_SCHEMA.items()])


def weather_frame(observations: list[tuple[dt.datetime, float]]) -> pl.DataFrame:
    frame = pl.DataFrame(
        {
            "obs_date": [t.astimezone(ZoneInfo(NEW_YORK)).date() for t, _ in observations],
            "origin": ["EWR"] * len(observations),
            "time_hour": [t for t, _ in observations],
            "temp": [v for _, v in observations],
        }
    )
    missing = [c for c in BRONZE_WEATHER_SCHEMA if c not in frame.columns]
    frame = frame.with_columns([pl.lit(None).alias(c) for c in missing])
    return frame.select([pl.col(c).cast(t) for c, t in BRONZE_WEATHER_SCHEMA.items()])


PLANES = pl.DataFrame({"tailnum": ["N1"], "year": [2003], "seats": [150]}).cast(
    {"year": pl.Int32, "seats": pl.Int32}
)


def test_a_report_counts_from_the_end_of_its_hour_bucket_not_from_its_stamp() -> None:
    """The hh:00 report is observed during hh (usually at hh:51): a 14:30 departure cannot know it."""
    flights = flights_frame([flight(D, 1, 0, 14, 30), flight(D, 2, 0, 14, 0)])
    reports = [(utc(D, 12), 0.5), (utc(D, 13), 1.0), (utc(D, 14), 2.0), (utc(D, 15), 99.0)]
    out = build_features(flights, weather_frame(reports), PLANES, [D]).sort("flight")
    assert out["temp"].to_list() == [1.0, 1.0]  # the 13:00 report, known from 14:00
    assert out["weather_time"].to_list() == [utc(D, 14), utc(D, 14)]
    assert out["weather_age_minutes"].to_list() == [30, 0]
    used = out.join(weather_frame(reports).select("temp", "time_hour"), on="temp")
    assert (used["time_hour"] + dt.timedelta(hours=1) <= used["sched_dep_utc"]).all()
    # The 14:00 report, stamped before the 14:30 departure but observed after it, moves nothing.
    changed = [(t, 50.0 if t == utc(D, 14) else v) for t, v in reports]
    assert build_features(flights, weather_frame(changed), PLANES, [D]).sort("flight").equals(out)


def test_weather_older_than_the_tolerance_from_its_availability_is_not_used() -> None:
    flights = flights_frame([flight(D, 1, 0, 14, 0), flight(D, 2, 0, 14, 1)])
    out = build_features(flights, weather_frame([(utc(D, 10), 5.0), (utc(D, 14), 99.0)]), PLANES, [D])
    # Known from 11:00: 3 hours old at 14:00 (still used), older a minute later.
    assert out.sort("flight")["temp"].to_list() == [5.0, None]


def test_a_source_with_the_observation_minute_counts_reports_from_that_minute() -> None:
    weather = weather_frame([(utc(D, 13), 1.0), (utc(D, 14), 2.0), (utc(D, 15), 3.0)]).with_columns(
        minute=pl.Series([51, 10, None], dtype=pl.Int32)
    )
    flights = flights_frame([flight(D, 1, 0, 14, 5), flight(D, 2, 0, 14, 30), flight(D, 3, 0, 16, 0)])
    out = build_features(flights, weather, PLANES, [D]).sort("flight")
    assert out["temp"].to_list() == [1.0, 2.0, 3.0]
    assert out["weather_time"].to_list() == [utc(D, 13, 51), utc(D, 14, 10), utc(D, 16)]


def test_the_first_departures_of_a_day_use_the_evening_before_from_the_weather_lookback(
    tmp_path: Path,
) -> None:
    """00:30 in New York: the report known then is the 23:00 one of the previous local day."""
    store = DeltaStore(str(tmp_path / "lake"))
    flights = flights_frame([flight(D, 1, 0, 4, 30)])  # 04:30 UTC is 00:30 EDT
    weather = weather_frame([(utc(D, 2), 0.5), (utc(D, 3), 1.0), (utc(D, 4), 99.0)])
    assert weather["obs_date"].to_list() == [D - dt.timedelta(days=1)] * 2 + [D]
    store.replace_days(BRONZE_FLIGHTS, flights, "flight_date", [D], {})
    store.replace_days(BRONZE_WEATHER, weather, "obs_date", sorted(set(weather["obs_date"])), {})
    store.overwrite(BRONZE_PLANES, PLANES, {})
    out = build_feature_days(store, [D]).frame
    assert out["temp"].to_list() == [1.0]
    assert out["weather_time"].to_list() == [utc(D, 4)]
    assert out["weather_age_minutes"].to_list() == [30]


def test_trailing_rates_use_only_days_strictly_before_within_the_window() -> None:
    rows = [
        flight(D - dt.timedelta(days=8), 10, 60),  # outside the 7-day window, inside 28
        flight(D - dt.timedelta(days=7), 11, 0),
        flight(D - dt.timedelta(days=1), 12, 30),
        flight(D - dt.timedelta(days=1), 13, None),  # cancelled: no outcome, not counted
        flight(D, 1, 120),  # the day itself never counts, even its other flights
        flight(D, 2, 0),
    ]
    out = build_features(flights_frame(rows), weather_frame([(utc(D, 14), 1.0)]), PLANES, [D]).sort("flight")
    assert out.height == 2
    assert out["carrier_flights_7d"].to_list() == [2, 2]
    assert out["carrier_delay_rate_7d"].to_list() == [0.5, 0.5]
    assert out["carrier_flights_28d"].to_list() == [3, 3]
    assert out["route_delay_rate_28d"].to_list() == [2 / 3, 2 / 3]
    assert out["is_delayed"].to_list() == [True, False]


def test_a_day_with_no_history_has_zero_volume_and_no_rate() -> None:
    out = build_features(flights_frame([flight(D, 1, 0)]), weather_frame([(utc(D, 14), 1.0)]), PLANES, [D])
    assert out["origin_flights_28d"].to_list() == [0]
    assert out["origin_delay_rate_28d"].to_list() == [None]


def test_flights_without_an_outcome_are_excluded_and_schema_is_the_contract() -> None:
    out = build_features(
        flights_frame([flight(D, 1, None), flight(D, 2, 16)]), weather_frame([(utc(D, 14), 1.0)]), PLANES, [D]
    )
    assert out["flight"].to_list() == [2]
    assert dict(out.schema) == FEATURE_SCHEMA
    assert out["plane_age"].to_list() == [10]


def test_calendar_features_are_local_new_york_time() -> None:
    out = build_features(
        flights_frame([flight(D, 1, 0, 14, 15)]), weather_frame([(utc(D, 14), 1.0)]), PLANES, [D]
    )
    # 14:15 UTC on 2013-03-20 is 10:15 in New York (daylight time, UTC-4).
    assert (out["dep_hour"][0], out["dep_minute"][0]) == (10, 15)
    assert out["weekday"][0] == 3  # a Wednesday
