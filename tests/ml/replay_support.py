"""What the replay tests share: the demo's first days, the landing files they read back, ingestion."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl

from ml.ingest.batch import Batch, ingest_days, read_reference
from ml.ingest.landing_zone import LandingZone
from ml.ingest.parse import parse_landing_csv
from ml.ingest.source_data import read_source
from ml.ingest.validation import validate_flights, validate_weather
from ml.lake.schemas import AIRLINES_LANDING, AIRPORTS_LANDING, FLIGHTS_LANDING, WEATHER_LANDING

REPOSITORY = Path(__file__).resolve().parents[2]
FIRST, LAST = dt.date(2013, 1, 1), dt.date(2013, 1, 3)
REFERENCE = ["airlines.csv", "airports.csv", "planes.csv"]
NOW = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
DAILY = ("flights", "weather")
LABELS = ["dep_delay", "arr_delay", "air_time", "distance", "carrier", "origin", "dest"]
SHIFT_2026 = 4746
"""678 weeks: 2013-01-01 (a Tuesday) lands on Tuesday 2025-12-30."""


def day_files(landing: Path, dataset: str) -> list[str]:
    return sorted(p.name for p in (landing / dataset).iterdir())


def snapshot(landing: Path) -> dict[Path, tuple[int, bytes]]:
    return {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(landing.rglob("*")) if p.is_file()}


def source_rows(dataset: str, day: dt.date) -> int:
    frame = read_source(dataset)
    return frame.filter(
        (pl.col("year") == str(day.year))
        & (pl.col("month") == str(day.month))
        & (pl.col("day") == str(day.day))
    ).height


def args(landing: Path, first: dt.date = FIRST, last: dt.date = LAST, *extra: str) -> list[str]:
    return ["--landing", str(landing), "--start", first.isoformat(), "--end", last.isoformat(), *extra]


def span(first: dt.date, last: dt.date) -> list[dt.date]:
    return [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]


def ingested(landing: Path, first: dt.date, last: dt.date) -> tuple[Batch, Batch]:
    """The platform's own ingestion of the landing files: flights and weather batches."""
    zone = LandingZone(str(landing), str(landing.parent / "quarantine"))
    airports = read_reference(zone, AIRPORTS_LANDING, now=NOW)["faa"].to_list()
    carriers = read_reference(zone, AIRLINES_LANDING, now=NOW)["carrier"].to_list()
    days = span(first, last)
    flights = ingest_days(
        zone, FLIGHTS_LANDING, days, lambda f: validate_flights(f, airports, carriers), now=NOW
    )
    weather = ingest_days(zone, WEATHER_LANDING, days, lambda f: validate_weather(f, airports), now=NOW)
    assert not flights.failed and not weather.failed
    return flights, weather


def typed_day(landing: Path, dataset: str, day: dt.date) -> pl.DataFrame:
    path = landing / dataset / f"{day.isoformat()}.csv"
    contract = FLIGHTS_LANDING if dataset == "flights" else WEATHER_LANDING
    return parse_landing_csv(path.read_bytes(), contract, str(path)).drop("__line")


def source_day_rows(dataset: str, day: dt.date) -> pl.DataFrame:
    return read_source(dataset).filter(
        (pl.col("year") == str(day.year))
        & (pl.col("month") == str(day.month))
        & (pl.col("day") == str(day.day))
    )


def utc(frame: pl.DataFrame) -> pl.Series:
    return frame["time_hour"].str.to_datetime("%Y-%m-%dT%H:%M:%SZ", time_zone="UTC")


def minutes(hhmm: pl.Series) -> pl.Series:
    return hhmm // 100 * 60 + hhmm % 100
