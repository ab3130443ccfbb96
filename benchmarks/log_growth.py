"""Delta log growth: opening a table after 400 commits ÷ after 10 commits.

    python -m benchmarks.log_growth [--quick]

One table of bronze flights receives small commits: `DeltaStore.replace_days` of one day,
cycling over the same 10 days, so the table holds about the same live files (9 after 10
commits, 10 after 400) and only the length of its log differs. (The table is created empty
by the first write, as every DeltaStore table is, so that write makes two commits.) At 10
commits the table folder is copied aside; at 400 both tables are measured, interleaved
(10, 400, 10, 400, ...) so that other load on the machine hits both alike:

- open: `DeltaTable(uri)` and its `version()`;
- scan one day: `pl.scan_delta(uri)` filtered to one day, collected;
- replace one day: `DeltaStore.replace_days` (measured last, as it adds commits: the
  tables go from 10 to 10+n and from 400 to 400+n commits).

Target: after 400 ÷ after 10 commits <= 2 for both ways of opening (open, scan one day). The tables are created with
`delta.checkpointInterval=10`; the output lists the checkpoint files found in `_delta_log`.
"""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import polars as pl
from deltalake import DeltaTable

from benchmarks.common import (
    Report,
    arguments,
    bronze_flights_frame,
    days_between,
    median,
    ms,
    replay_landing,
    seconds,
    spread,
)
from ml.lake.delta import DeltaStore

TARGET = 2.0
FIRST, LAST = dt.date(2013, 1, 1), dt.date(2013, 1, 10)
TABLE = "bronze/flights"
MARKS = (10, 400)
WRITES_TIMED = 10


def log_files(uri: str) -> dict[str, object]:
    names = sorted(p.name for p in (Path(uri) / "_delta_log").iterdir())
    checkpoints = [n for n in names if ".checkpoint." in n]
    return {
        "commit files (.json)": sum(n.endswith(".json") for n in names),
        "checkpoint files": len(checkpoints),
        "latest checkpoint version": int(checkpoints[-1].split(".")[0]) if checkpoints else "none",
        "_last_checkpoint": "yes" if "_last_checkpoint" in names else "no",
    }


def interleaved(
    operations: dict[int, Callable[[], object]], repeats: int, warmup: int
) -> dict[int, list[float]]:
    """Seconds of each operation, one call of each in turn per round."""
    times: dict[int, list[float]] = {mark: [] for mark in operations}
    for round_ in range(warmup + repeats):
        for mark, operation in operations.items():
            elapsed = seconds(operation)
            if round_ >= warmup:
                times[mark].append(elapsed)
    return times


def main(argv: Sequence[str] | None = None) -> Report:
    args = arguments(__doc__.split("\n\n")[0], argv)
    repeats = 5 if args.quick else 30
    writes = 3 if args.quick else WRITES_TIMED
    marks = (10, 40) if args.quick else MARKS
    report = Report("log_growth", args.quick)
    logs: dict[int, dict[str, object]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-log-growth-") as tmp:
        work = Path(tmp)
        landing = replay_landing(work / "landing", FIRST, LAST)
        days = days_between(FIRST, LAST)
        frames = {
            d: f
            for (d,), f in bronze_flights_frame(landing, days)
            .partition_by("flight_date", as_dict=True)
            .items()
        }
        stores = {mark: DeltaStore(str(work / f"lake-{mark}")) for mark in marks}
        growing = stores[marks[-1]]
        meta = {"benchmark": "log_growth"}
        version, written = -1, 0
        for mark in marks:
            while version + 1 < mark:
                day = days[written % len(days)]
                version = growing.replace_days(TABLE, frames[day], "flight_date", [day], meta).version
                written += 1
            assert version + 1 == mark, (version, mark)
            if mark != marks[-1]:
                shutil.copytree(growing.uri(TABLE), stores[mark].uri(TABLE))
        uris = {mark: store.uri(TABLE) for mark, store in stores.items()}
        for mark, uri in uris.items():
            logs[mark] = {"live files": len(DeltaTable(uri).file_uris()), **log_files(uri)}
        probe = days[len(days) // 2]
        measured = {
            "open": interleaved(
                {m: lambda u=u: DeltaTable(u).version() for m, u in uris.items()}, repeats, 2
            ),
            "scan": interleaved(
                {
                    m: lambda u=u: pl.scan_delta(u).filter(pl.col("flight_date") == probe).collect()
                    for m, u in uris.items()
                },
                repeats,
                2,
            ),
        }
        cycle = iter(range(1_000_000))

        def write(store: DeltaStore) -> Callable[[], object]:
            def one() -> None:
                day = days[next(cycle) % len(days)]
                store.replace_days(TABLE, frames[day], "flight_date", [day], meta)

            return one

        measured["write"] = interleaved({m: write(s) for m, s in stores.items()}, writes, 0)

    low, high = marks
    rows = []
    for key, what in (
        ("open", "DeltaTable(uri).version()"),
        ("scan", f"pl.scan_delta one day ({probe}), collect"),
        ("write", "replace_days of one day"),
    ):
        row: dict[str, object] = {"operation": what}
        for mark in marks:
            row[f"after {mark} commits"] = ms(median(measured[key][mark]))
            row[f"min..max ms @{mark}"] = spread(measured[key][mark], "ms")
        value = median(measured[key][high]) / median(measured[key][low])
        row["ratio"] = f"{value:.2f}x"
        rows.append(row)
        report.headline(f"{what}: {high} ÷ {low} commits", value, TARGET if key in ("open", "scan") else None)
    report.table(
        f"Table access vs log length, interleaved, median of {repeats} (writes: {writes} each)", rows
    )
    report.table(
        "_delta_log of each table before the measurements", [{"commits": m, **logs[m]} for m in marks]
    )
    has_checkpoints = all(int(logs[m]["checkpoint files"]) > 0 for m in marks)  # type: ignore[call-overload]
    report.note(f"checkpoint files exist in _delta_log: {'yes' if has_checkpoints else 'NO'}")
    return report.finish(args.json)


if __name__ == "__main__":
    main()
