"""Delta layout: a one-day rewrite after maintenance ÷ writing the same rows into an empty table.

    python -m benchmarks.delta_layout [--quick] [--cell-budget N] [--traffic 1 10 100]

Frames are rows of the features table: a year of real 2013 features, built in-process
from replayed landing files by the functions the assets call (`ingest_days` with the
validators, `build_features`). Traffic at k times tiles each day k times with distinct
flight numbers (k = 1, 10, 100); ten years shift the year by a year at a time. Each table
is written as a backfill writes it, by range runs (`DeltaStore.replace_days` of many days
in one commit) of at most 500,000 rows (one run per year at 1x), then maintained once by
`DeltaStore.maintain` (vacuum retention 0). Measured on days spread over the last year:

- rewrite after maintenance: `replace_days` of one day's rows on the maintained table
  (each day in turn, several rounds; median), each time right after the same day's write
  into an empty table and on a table alone, so that the three kinds of write are timed in
  pairs moments apart;
- empty table: `replace_days` of the same rows into a table that exists and holds no rows;
- day alone (informative, the floor of any layout): the same rewrite on a table that holds
  only that day, in one file: what a daily write costs over a first write before any other
  file or commit is in the table;
- rewrite before maintenance (informative): the same on the table as the range runs left it.

Ratios, each with a 90% bootstrap interval over the pairs: (a) rewrite after maintenance ÷
empty table at 1x, 10x and 100x, target <= 2;
(b) the rewrite on ten years ÷ on one year at 1x (interleaved), target <= 1.5. For
reference, the same rewrite right after delta-rs `optimize.compact()` put the 1x year in one
file (the maintenance before day ranges). `--cell-budget` overrides
`ml.lake.layout.CELL_BUDGET` (rows x columns of a merged file) to compare budgets.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from unittest import mock

import numpy as np
import polars as pl

from benchmarks.common import (
    FIRST_DAY,
    LAST_DAY,
    Report,
    arguments,
    days_between,
    median,
    ms,
    replay_landing,
    seconds,
    secs,
    spread,
)
from ml.features.flight_features import build_features
from ml.ingest.batch import ingest_days, read_reference
from ml.ingest.landing_zone import LandingZone
from ml.ingest.validation import validate_flights, validate_weather
from ml.lake import layout
from ml.lake.delta import DeltaStore
from ml.lake.schemas import (
    AIRLINES_LANDING,
    AIRPORTS_LANDING,
    FLIGHTS_LANDING,
    PLANES_LANDING,
    WEATHER_LANDING,
)
from ml.lake.tables import FEATURES_TABLE

TARGET_EMPTY = 2.0
TARGET_YEARS = 1.5
DAY = "flight_date"
META = {"benchmark": "delta_layout"}
RUN_ROWS = 500_000
FLIGHT_STRIDE = 10_000
"""Tile i of a day adds i * FLIGHT_STRIDE to the flight numbers (2013's highest is below 9,000)."""
PROBES = (40, 110, 180, 250, 320)
"""Days of the last year (counted from its first) whose rewrites are measured."""


def features_of(landing: Path, days: Sequence[dt.date]) -> pl.DataFrame:
    """Features of `days`, through the ingestion and feature code the assets run."""
    zone = LandingZone(str(landing), str(landing.parent / "quarantine"))
    now = dt.datetime.now(dt.UTC)
    airports = read_reference(zone, AIRPORTS_LANDING, now=now)["faa"].to_list()
    carriers = read_reference(zone, AIRLINES_LANDING, now=now)["carrier"].to_list()
    planes = read_reference(zone, PLANES_LANDING, now=now)
    flights = ingest_days(
        zone, FLIGHTS_LANDING, list(days), lambda f: validate_flights(f, airports, carriers), now=now
    ).valid
    weather = ingest_days(zone, WEATHER_LANDING, list(days), lambda f: validate_weather(f, airports), now=now)
    return build_features(flights, weather.valid, planes, days)


def scaled(base: pl.DataFrame, scale: int, shift: dt.timedelta = dt.timedelta(0)) -> pl.DataFrame:
    """`base` tiled `scale` times with distinct keys, moved `shift` later."""
    tiles = [base.with_columns(pl.col("flight") + i * FLIGHT_STRIDE) for i in range(scale)]
    frame = pl.concat(tiles) if scale > 1 else base
    if shift:
        frame = frame.with_columns(
            pl.col(DAY) + shift, pl.col("sched_dep_utc") + shift, pl.col("weather_time") + shift
        )
    return frame.sort(DAY, maintain_order=True)


def span(base: pl.DataFrame) -> dt.timedelta:
    """From the frame's first day to the day after its last: a year for 2013, so years follow on."""
    return base[DAY].max() - base[DAY].min() + dt.timedelta(days=1)  # type: ignore[operator]


def range_runs(base: pl.DataFrame, scale: int, years: int) -> list[tuple[int, list[dt.date]]]:
    """(year, base days) of each range run: whole days, at most RUN_ROWS rows at this scale."""
    per_day = dict(base.group_by(DAY).len().iter_rows())
    runs: list[tuple[int, list[dt.date]]] = []
    for year in range(years):
        current: list[dt.date] = []
        for day in sorted(per_day):
            if current and (sum(per_day[d] for d in current) + per_day[day]) * scale > RUN_ROWS:
                runs.append((year, current))
                current = []
            current.append(day)
        runs.append((year, current))
    return runs


def build(store: DeltaStore, table: str, base: pl.DataFrame, scale: int, years: int) -> float:
    """Write the table by range runs; returns their wall seconds."""
    total = 0.0
    for year, days in range_runs(base, scale, years):
        frame = scaled(base.filter(pl.col(DAY).is_in(days)), scale, span(base) * year)
        written = sorted(set(frame[DAY]))
        total += seconds(lambda f=frame, w=written: store.replace_days(table, f, DAY, w, META))
    return total


def layout_of(store: DeltaStore, table: str, years: int) -> dict[str, object]:
    files = layout.live_files(store.table(table), DAY) or []
    sizes = [f.size for f in files]
    return {
        "files/year": round(len(files) / years),
        "max days/file": layout.max_days_per_file(files),
        "MiB/file": f"{median(sizes) / 2**20:.2f}" if sizes else "-",
    }


def probe_days(base: pl.DataFrame, year: int) -> list[tuple[dt.date, dt.date]]:
    """(base day, day in `year`) of each probe that exists in the frame."""
    days = sorted(set(base[DAY]))
    picked = sorted({days[min(p, len(days) - 1)] for p in PROBES})
    return [(d, d + span(base) * year) for d in picked]


def rows_of(base: pl.DataFrame, day: dt.date, scale: int, year: int) -> pl.DataFrame:
    return scaled(base.filter(pl.col(DAY) == day), scale, span(base) * year)


class Probe:
    """Rewrites of the probe days on one table, and writes of their rows into empty tables.

    Each method times one probe day, by its index, so that the kinds can be interleaved day
    by day and a phase of the machine falls on all of them alike.
    """

    def __init__(self, store: DeltaStore, table: str, base: pl.DataFrame, scale: int, year: int) -> None:
        self.store, self.table = store, table
        self.frames = {d: rows_of(base, b, scale, year) for b, d in probe_days(base, year)}
        self.days = list(self.frames)
        self.empties = iter(range(1_000_000))

    def rewrite(self, i: int) -> float:
        day = self.days[i]
        return seconds(lambda: self.store.replace_days(self.table, self.frames[day], DAY, [day], META))

    def rewrite_each(self) -> list[float]:
        return [self.rewrite(i) for i in range(len(self.days))]

    def alone(self, i: int) -> float:
        """The floor: the day rewritten on a table that holds that day only, in one file."""
        day = self.days[i]
        frame = self.frames[day]
        name = f"{self.table}_alone_{day.isoformat().replace('-', '')}"
        if not self.store.exists(name):
            self.store.replace_days(name, frame, DAY, [day], META)
        return seconds(lambda: self.store.replace_days(name, frame, DAY, [day], META))

    def empty(self, i: int) -> float:
        day = self.days[i]
        frame = self.frames[day]
        name = f"{self.table}_empty_{next(self.empties)}"
        self.store.ensure_table(name, frame.to_arrow().schema, DAY)
        return seconds(lambda: self.store.replace_days(name, frame, DAY, [day], META))


def interleave(rounds: int, days: int, **work: Callable[[int], float]) -> dict[str, list[float]]:
    """Seconds of each kind of work, each kind in turn on each day, round after round: the
    i-th time of one kind and of another were taken moments apart (a pair)."""
    times: dict[str, list[float]] = {k: [] for k in work}
    for _ in range(rounds):
        for i in range(days):
            for kind, fn in work.items():
                times[kind].append(fn(i))
    return times


def ratio_interval(
    top: Sequence[float], bottom: Sequence[float], confidence: float = 0.9, resamples: int = 2000
) -> tuple[float, float]:
    """Interval of median(top) ÷ median(bottom), by a bootstrap that resamples the pairs."""
    pairs = np.array([top, bottom])
    picks = np.random.default_rng(0).integers(0, pairs.shape[1], (resamples, pairs.shape[1]))
    ratios = np.median(pairs[0][picks], axis=1) / np.median(pairs[1][picks], axis=1)
    tail = (1 - confidence) / 2 * 100
    return float(np.percentile(ratios, tail)), float(np.percentile(ratios, 100 - tail))


def interval_text(top: Sequence[float], bottom: Sequence[float]) -> str:
    low, high = ratio_interval(top, bottom)
    return f"{low:.2f}-{high:.2f}"


def measure_scale(
    work: Path, base: pl.DataFrame, scale: int, rounds: int, keep: bool
) -> tuple[dict[str, object], dict[str, list[float]], DeltaStore]:
    store = DeltaStore(str(work / f"lake-{scale}x"))
    table = FEATURES_TABLE
    written = build(store, table, base, scale, 1)
    before_files = len(store.table(table).file_uris())
    probe = Probe(store, table, base, scale, 0)
    ahead = probe.rewrite_each()  # informative: the layout the range runs left
    maintained = seconds(lambda: store.maintain(table, 0))
    after = layout_of(store, table, 1)
    times = interleave(rounds, len(probe.days), empty=probe.empty, alone=probe.alone, rewrite=probe.rewrite)
    times["before maintenance"] = ahead
    again = store.maintain(table, 0)  # after the rewrites: the layout holds, nothing to do
    row = {
        "traffic": f"{scale}x",
        "rows/day": int(median([f.height for f in probe.frames.values()])),
        "range runs": secs(written),
        "files after runs": before_files,
        "maintenance": secs(maintained),
        **after,
        "files rewritten by a 2nd maint.": int(again["files_removed"]),  # type: ignore[call-overload]
    }
    if not keep:
        shutil.rmtree(work / f"lake-{scale}x")
    return row, times, store


def compacted_reference(work: Path, base: pl.DataFrame) -> dict[str, list[float]]:
    """The maintenance before day ranges: each day rewritten right after delta-rs compacted the 1x year.

    Compacted again before each rewrite: a rewrite leaves the year cut into write-target files.
    """
    store = DeltaStore(str(work / "lake-compacted"))
    build(store, FEATURES_TABLE, base, 1, 1)
    probe = Probe(store, FEATURES_TABLE, base, 1, 0)
    times: dict[str, list[float]] = {"rewrite": [], "empty": []}
    for i in range(len(probe.days)):
        times["empty"].append(probe.empty(i))
        store.table(FEATURES_TABLE).optimize.compact()
        times["rewrite"].append(probe.rewrite(i))
    return times


def main(argv: Sequence[str] | None = None) -> Report:
    def extra(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--cell-budget", type=int, default=layout.CELL_BUDGET)
        parser.add_argument(
            "--traffic", type=int, nargs="+", default=[1, 10, 100], help="traffic multiples (1 is always run)"
        )

    args = arguments(__doc__.split("\n\n")[0], argv, extra)
    last = dt.date(2013, 2, 28) if args.quick else LAST_DAY
    scales = sorted({1, *args.traffic})
    years = 3 if args.quick else 10
    rounds = 2 if args.quick else 9
    report = Report("delta_layout", args.quick)
    with (
        tempfile.TemporaryDirectory(prefix="bench-delta-layout-") as tmp,
        mock.patch.object(layout, "CELL_BUDGET", args.cell_budget),
    ):
        work = Path(tmp)
        landing = replay_landing(work / "landing", FIRST_DAY, last)
        base = features_of(landing, days_between(FIRST_DAY, last))
        rows, times, stores = [], {}, {}
        for scale in scales:
            frame = (
                base if scale < 100 or not args.quick else base.filter(pl.col(DAY) <= dt.date(2013, 1, 10))
            )
            row, times[scale], stores[scale] = measure_scale(work, frame, scale, rounds, keep=scale == 1)
            rows.append(row)
        one_year = stores[1]
        decade = DeltaStore(str(work / "lake-decade"))
        decade_written = build(decade, FEATURES_TABLE, base, 1, years)
        decade_maintained = seconds(lambda: decade.maintain(FEATURES_TABLE, 0))
        decade_layout = layout_of(decade, FEATURES_TABLE, years)
        one = Probe(one_year, FEATURES_TABLE, base, 1, 0)
        ten = Probe(decade, FEATURES_TABLE, base, 1, years - 1)
        compared = interleave(rounds + 2, len(one.days), one=one.rewrite, ten=ten.rewrite)
        reference = compacted_reference(work, base)

    table = []
    for scale, row in zip(scales, rows, strict=True):
        t = times[scale]
        band = interval_text(t["rewrite"], t["empty"])
        table.append(
            {
                **row,
                "rewrite before maint.": ms(median(t["before maintenance"])),
                "rewrite after maint.": ms(median(t["rewrite"])),
                "min..max ms": spread(t["rewrite"], "ms"),
                "day alone (floor)": ms(median(t["alone"])),
                "empty table": ms(median(t["empty"])),
                "ratio [90% interval]": f"{median(t['rewrite']) / median(t['empty']):.2f}x [{band}]",
                "floor ratio": f"{median(t['alone']) / median(t['empty']):.2f}x",
            }
        )
        report.headline(
            f"(a) {scale}x: one-day rewrite after maintenance ÷ into an empty table",
            median(t["rewrite"]) / median(t["empty"]),
            TARGET_EMPTY,
            detail=f"90% interval {band}",
        )
    report.table(
        f"One-day rewrites of features, a year at each traffic, cell budget {args.cell_budget} "
        f"(median of {rounds} rounds over {len(PROBES)} days)",
        table,
    )
    report.table(
        f"{years} years at 1x against one year (interleaved, {rounds + 2} rounds)",
        [
            {
                "table": f"{n} year(s)",
                "range runs": secs(w) if w is not None else "-",
                "maintenance": secs(m) if m is not None else "-",
                **lay,
                "rewrite after maint.": ms(median(compared[k])),
                "min..max ms": spread(compared[k], "ms"),
            }
            for n, k, w, m, lay in (
                (1, "one", None, None, {k: rows[0][k] for k in decade_layout}),
                (years, "ten", decade_written, decade_maintained, decade_layout),
            )
        ],
    )
    report.headline(
        f"(b) 1x: one-day rewrite after maintenance, {years} years ÷ one year",
        median(compared["ten"]) / median(compared["one"]),
        TARGET_YEARS,
        detail=f"90% interval {interval_text(compared['ten'], compared['one'])}",
    )
    report.headline(
        "1x, year compacted by optimize.compact() (before day ranges): rewrite ÷ into an empty table",
        median(reference["rewrite"]) / median(reference["empty"]),
        None,
        detail=f"rewrite {ms(median(reference['rewrite']))}, empty {ms(median(reference['empty']))}",
    )
    report.note(
        f"year compacted into one file by optimize.compact(): one-day rewrite {ms(median(reference['rewrite']))}, "
        f"into an empty table {ms(median(reference['empty']))}"
    )
    return report.finish(args.json)


if __name__ == "__main__":
    main()
