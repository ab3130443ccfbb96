"""Delta write ratio: `DeltaStore.replace_days` of a day and of a month ÷ polars `write_parquet`.

    python -m benchmarks.delta_write [--quick]

Frames are bronze flights built by the real ingestion path (replay into a temporary
landing folder, `ingest_days` + `validate_flights`): one day (2013-01-15) and one month
(January). For each frame, all in the same run:

- create: the write that creates the table (a fresh table per repeat);
- own file (steady state of daily runs): the same days replaced again on a table that also
  holds other days in other files, so only the file of these days matches the predicate;
- inside a bigger file: the same days replaced again on a table where they share files
  with other days: January (and February, for the month) written by one range write, whose
  files pack whole days within the layout budget (about 7 days of bronze at 2013's traffic).
  Each replace rewrites the files holding its days, their other days with them (the output
  shows the table's files after the repeats);
- append (reference): a bare `write_deltalake(mode="append")` of the frame, no predicate,
  no checks, no log read: the floor of a Delta commit of these rows;
- baseline: `DataFrame.write_parquet` of the same frame to a local file.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import polars as pl
from deltalake import DeltaTable, write_deltalake

import ml.lake.delta
from benchmarks.common import (
    Report,
    Timers,
    arguments,
    bronze_flights_frame,
    days_between,
    files_of,
    median,
    ms,
    ratio,
    repeat,
    replay_landing,
    spread,
)
from ml.lake import day_files, layout
from ml.lake.delta import DeltaStore

JANUARY = days_between(dt.date(2013, 1, 1), dt.date(2013, 1, 31))
FEBRUARY = days_between(dt.date(2013, 2, 1), dt.date(2013, 2, 28))
DAY = dt.date(2013, 1, 15)
META = {"benchmark": "delta_write"}
KINDS = {
    "create": "replace_days, creates the table",
    "own": "replace_days, days in their own file",
    "inside": "replace_days, days inside a bigger file",
    "append": "write_deltalake append (reference)",
    "parquet": "polars write_parquet (baseline)",
}


def _rows(frame: pl.DataFrame, days: Sequence[dt.date]) -> pl.DataFrame:
    return frame.filter(pl.col("flight_date").is_in(list(days)))


def prepare(store: DeltaStore, table: str, parts: Sequence[Sequence[dt.date]], rows: pl.DataFrame) -> None:
    """Write `rows` into `table`, one commit (so one file) per group of days in `parts`."""
    for days in parts:
        store.replace_days(table, _rows(rows, days), "flight_date", list(days), META)


def measure_frame(
    store: DeltaStore,
    work: Path,
    label: str,
    days: list[dt.date],
    rows: pl.DataFrame,
    repeats: int,
) -> tuple[dict[str, list[float]], dict[str, str]]:
    """Seconds of each kind of write of the rows of `days` (one per repeat), and table files."""
    frame = _rows(rows, days)
    others = [d for d in JANUARY + FEBRUARY if d not in days]
    counter = iter(range(1_000_000))

    def replace(table: str) -> Callable[[], object]:
        return lambda: store.replace_days(table, frame, "flight_date", days, META)

    def create() -> None:
        replace(f"create_{label}_{next(counter)}")()

    own, inside = f"own_{label}", f"inside_{label}"
    # own: the other days before and after ours in their own files, then our days alone
    before = [d for d in others if d < days[0]]
    after = [d for d in others if d > days[-1]]
    prepare(store, own, [p for p in (before, after, days) if p], rows)
    # inside: our days share one file with the rest of January (and February for the month)
    prepare(store, inside, [JANUARY + (FEBRUARY if label == "month" else [])], rows)
    append_table = str(work / f"append_{label}")
    target = work / f"{label}.parquet"
    times = {
        "create": repeat(create, repeats),
        "own": repeat(replace(own), repeats, warmup=1),
        "inside": repeat(replace(inside), repeats, warmup=1),
        "append": repeat(lambda: write_deltalake(append_table, frame.to_arrow(), mode="append"), repeats, 1),
        "parquet": repeat(lambda: frame.write_parquet(target), repeats, warmup=1),
    }
    return times, {"own": files_of(store, own), "inside": files_of(store, inside)}


def replace_breakdown(store: DeltaStore, frame: pl.DataFrame, repeats: int) -> dict[str, float]:
    """Mean seconds per one-day replace (day in its own file) spent in each part of it."""
    timers = Timers(
        {
            "replace_days (total)": (DeltaStore, "replace_days"),
            "check_rows_within": (ml.lake.delta, "check_rows_within"),
            "ensure_table (open the table)": (DeltaStore, "ensure_table"),
            "unsupported (protocol and schema check)": (day_files, "unsupported"),
            "live_files (the snapshot's files by day)": (layout, "live_files"),
            "writing the Parquet files": (day_files._Writer, "write"),
            "commit (create_write_transaction)": (DeltaTable, "create_write_transaction"),
        }
    )
    with timers.patched():
        for _ in range(repeats):
            store.replace_days("own_day", frame, "flight_date", [DAY], META)  # made by measure_frame
    return {k: timers.totals[k] / repeats for k in timers.targets}


def main(argv: Sequence[str] | None = None) -> Report:
    args = arguments(__doc__.split("\n\n")[0], argv)
    repeats = 3 if args.quick else 15
    report = Report("delta_write", args.quick)
    with tempfile.TemporaryDirectory(prefix="bench-delta-write-") as tmp:
        work = Path(tmp)
        landing = replay_landing(work / "landing", JANUARY[0], FEBRUARY[-1])
        rows = bronze_flights_frame(landing, JANUARY + FEBRUARY)
        store = DeltaStore(str(work / "lake"))
        results = {
            "day": measure_frame(store, work, "day", [DAY], rows, repeats),
            "month": measure_frame(store, work, "month", JANUARY, rows, repeats),
        }
        breakdown = replace_breakdown(store, _rows(rows, [DAY]), repeats)

    table = []
    for label, days in (("day", [DAY]), ("month", JANUARY)):
        times, files = results[label]
        base = median(times["parquet"])
        shares = {
            "own": "other days in other files",
            "inside": "January" + (" + February" if label == "month" else ""),
        }
        for kind, what in KINDS.items():
            table.append(
                {
                    "frame": f"{label} ({_rows(rows, days).height} rows)",
                    "write": what,
                    "median": ms(median(times[kind])),
                    "min..max ms": spread(times[kind], "ms"),
                    "ratio": ratio(median(times[kind]) / base),
                    "table after the repeats": f"{files[kind]}; {shares[kind]}" if kind in files else "",
                }
            )
        for kind in ("own", "inside", "create"):
            report.headline(f"{label}: {KINDS[kind]} ÷ write_parquet", median(times[kind]) / base, None)
    report.table(f"Delta write vs polars write_parquet of the same frame, median of {repeats}", table)
    report.table(
        "Where a one-day replace_days (day in its own file) spends its time (mean per call)",
        [{"part": k, "mean": ms(v)} for k, v in breakdown.items()],
    )
    return report.finish(args.json)


if __name__ == "__main__":
    main()
