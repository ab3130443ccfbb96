"""The bare polars script: the platform's bronze and feature work done with polars alone.

    python -m benchmarks.bare_polars OUT LANDING FIRST LAST [SLICE_DAYS]

What a competent polars script does for the days FIRST..LAST without the platform, in
slices of SLICE_DAYS days (default: all at once) as the platform's run holds them under its
memory budget: read the slice's landing CSVs in the contract's types (no validation, no
quarantine), write the bronze flights and weather of the slice as one Parquet file each
under OUT, read the trailing windows the features need back from the files earlier slices
wrote there (the platform reads them from its bronze tables), call `build_features` and
write the features as one Parquet file. No Dagster, no Delta, no lineage: this module imports polars and the
feature code only (importing the code location costs a second per process, which would
pad the baseline). Prints one JSON line: seconds, `done_at` (epoch seconds when the work
ended), feature rows and the process's peak RSS.

`bare_features` (the features straight from the CSVs, nothing written) is the floor other
benchmarks and tests compare with.
"""

from __future__ import annotations

import datetime as dt
import json
import resource
import sys
import time
from pathlib import Path

import polars as pl

from ml.features.flight_features import WEATHER_LOOKBACK_DAYS, build_features, lookback_days
from ml.lake.schemas import FLIGHTS_LANDING, NULL_VALUES, PLANES_LANDING, TIMESTAMP_UTC, WEATHER_LANDING

UTC_HOUR = pl.col("time_hour").str.to_datetime("%Y-%m-%dT%H:%M:%SZ", time_zone="UTC").cast(TIMESTAMP_UTC)
DAY = pl.date("year", "month", "day")


def landing_files(landing: Path, dataset: str, first: dt.date, last: dt.date) -> list[Path]:
    start, end = first.isoformat(), last.isoformat()
    return sorted(p for p in (landing / dataset).glob("*.csv") if start <= p.stem <= end)


def read_flights(files: list[Path]) -> pl.DataFrame:
    flights = pl.read_csv(files, schema=FLIGHTS_LANDING.columns, null_values=NULL_VALUES)
    return flights.with_columns(UTC_HOUR).with_columns(
        DAY.alias("flight_date"),
        (pl.col("time_hour") + pl.duration(minutes=pl.col("minute"))).alias("sched_dep_utc"),
    )


def read_weather(files: list[Path]) -> pl.DataFrame:
    weather = pl.read_csv(files, schema=WEATHER_LANDING.columns, null_values=NULL_VALUES)
    return weather.with_columns(UTC_HOUR).with_columns(DAY.alias("obs_date"))


def read_planes(landing: Path) -> pl.DataFrame:
    return pl.read_csv(
        landing / "reference" / "planes.csv", schema=PLANES_LANDING.columns, null_values=NULL_VALUES
    )


def bare_features(
    landing: Path,
    days: list[dt.date],
    flights_from: dt.date | None = None,
    weather_from: dt.date | None = None,
) -> pl.DataFrame:
    """The features of `days` straight from the landing CSVs: polars and build_features only.

    `flights_from` / `weather_from`: the first day of each dataset to read (a trailing
    window before `days`); by default the first of `days`.
    """
    flights = read_flights(landing_files(landing, "flights", flights_from or days[0], days[-1]))
    weather = read_weather(landing_files(landing, "weather", weather_from or days[0], days[-1]))
    return build_features(flights, weather, read_planes(landing), days)


def _window(out: Path, table: str, column: str, first: dt.date, before: dt.date) -> pl.DataFrame | None:
    """Rows of [first, before) from the Parquet files earlier runs wrote, or None when there are none."""
    files = sorted((out / table).glob("*.parquet"))
    if not files:
        return None
    return pl.scan_parquet(files).filter((pl.col(column) >= first) & (pl.col(column) < before)).collect()


def bare_slice(out: Path, landing: Path, days: list[dt.date]) -> int:
    """Bronze and features of `days` as Parquet files under `out`; the trailing windows from earlier slices' files."""
    first, last = days[0], days[-1]
    flights = read_flights(landing_files(landing, "flights", first, last))
    weather = read_weather(landing_files(landing, "weather", first, last))
    for table, frame in (("bronze_flights", flights), ("bronze_weather", weather)):
        (out / table).mkdir(parents=True, exist_ok=True)
        frame.write_parquet(out / table / f"{first}.parquet")
    past_flights = _window(
        out, "bronze_flights", "flight_date", first - dt.timedelta(days=lookback_days()), first
    )
    past_weather = _window(
        out, "bronze_weather", "obs_date", first - dt.timedelta(days=WEATHER_LOOKBACK_DAYS), first
    )
    features = build_features(
        pl.concat([f for f in (past_flights, flights) if f is not None]),
        pl.concat([w for w in (past_weather, weather) if w is not None]),
        read_planes(landing),
        days,
    )
    (out / "features").mkdir(parents=True, exist_ok=True)
    features.write_parquet(out / "features" / f"{first}.parquet")
    return features.height


def bare_chunk(
    out: Path, landing: Path, first: dt.date, last: dt.date, slice_days: int = 0
) -> dict[str, object]:
    """Bronze and features of first..last in slices of `slice_days` days (0: one slice)."""
    start = time.perf_counter()
    days = [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]
    size = slice_days or len(days)
    rows = sum(bare_slice(out, landing, days[i : i + size]) for i in range(0, len(days), size))
    return {"seconds": time.perf_counter() - start, "done_at": time.time(), "feature_rows": rows}


def main(argv: list[str]) -> int:
    out, landing = Path(argv[0]), Path(argv[1])
    first, last = dt.date.fromisoformat(argv[2]), dt.date.fromisoformat(argv[3])
    result = bare_chunk(out, landing, first, last, int(argv[4]) if len(argv) > 4 else 0)
    # The process's high-water mark of resident memory (Linux reports KiB).
    result["peak_rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
