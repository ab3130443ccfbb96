"""Incremental feature cost: features of day 365 ÷ features of day 30, through the real asset.

    python -m benchmarks.incremental_features [--quick]

The lake holds bronze flights and weather for the whole year, written by one range run.
Each measurement is one `dg.materialize` of `features/flight_features` for a single
partition. Both days read the same amount of bronze (their 28-day flights window and one
day of weather), so the target is a ratio of at most 1.2. Phases:

1. before maintenance: the features table holds only what these runs wrote;
2. after maintenance: `DeltaStore.maintain` (compact, vacuum, checkpoint) of every lake
   table is run before each pair of measurements, so every measured run is the first write
   after a compaction;
3. (informative) the features table also holds every day, written by one range run: a
   one-day replace rewrites the file holding that day and its neighbours (whole days within
   the layout budget; before day files, delta-rs put the run's year in one file, which the
   replace rewrote whole).

`--quick` uses January and February (day 30 vs day 59).
"""

from __future__ import annotations

import datetime as dt
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import ml.features.build
from benchmarks.common import (
    BRONZE,
    FEATURES,
    FIRST_DAY,
    Lake,
    Report,
    Timers,
    arguments,
    day_of_year,
    files_of,
    median,
    ms,
    ratio,
    replay_landing,
    seconds,
    secs,
    spread,
)
from ml.lake.delta import VACUUM_RETENTION_HOURS, DeltaStore

TARGET = 1.2
EARLY = 30


def maintain_all(store: DeltaStore) -> dict[str, object]:
    files_removed = files_added = 0
    for table in store.tables():
        stats = store.maintain(table, VACUUM_RETENTION_HOURS)
        files_removed += int(stats["files_removed"])  # type: ignore[call-overload]
        files_added += int(stats["files_added"])  # type: ignore[call-overload]
    return {"files_removed": files_removed, "files_added": files_added}


def features_timers() -> Timers:
    return Timers(
        {
            "build_features": (ml.features.build, "build_features"),
            "read_days (bronze)": (DeltaStore, "read_days"),
            "replace_days (features)": (DeltaStore, "replace_days"),
        }
    )


def phase(
    lake: Lake,
    early: dt.date,
    late: dt.date,
    repeats: int,
    warmup: bool,
    before_each: Callable[[], None] | None = None,
) -> dict[str, object]:
    """Alternate single-partition runs of the two days; returns their times and a breakdown."""
    timers = features_timers()
    times: dict[dt.date, list[float]] = {early: [], late: []}
    parts: dict[dt.date, list[dict[str, float]]] = {early: [], late: []}
    if warmup:
        for day in (early, late):
            lake.materialize(FEATURES, partition_key=day.isoformat())
    with timers.patched():
        for _ in range(repeats):
            for day in (early, late):
                if before_each is not None:
                    before_each()
                timers.reset()
                times[day].append(lake.materialize(FEATURES, partition_key=day.isoformat()))
                parts[day].append(timers.snapshot())
    breakdown = {
        day: {label: median([p.get(label, 0.0) for p in parts[day]]) for label in timers.targets}
        for day in (early, late)
    }
    return {"times": times, "breakdown": breakdown, "files": files_of(lake.store, FEATURES[0])}


def main(argv: Sequence[str] | None = None) -> Report:
    args = arguments(__doc__.split("\n\n")[0], argv)
    repeats = 2 if args.quick else 5
    last_day_number = 59 if args.quick else 365
    early, late = day_of_year(EARLY), day_of_year(last_day_number)
    report = Report("incremental_features", args.quick)
    results: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-incremental-") as tmp:
        work = Path(tmp)
        landing = replay_landing(work / "landing", FIRST_DAY, late)
        lake = Lake(work / "platform", landing)
        lake.reference()
        bronze_seconds = lake.materialize(BRONZE, FIRST_DAY, late)
        results["before maintenance"] = phase(lake, early, late, repeats, warmup=True)
        maintenance_seconds: list[float] = []

        def compact() -> None:
            maintenance_seconds.append(seconds(lambda: maintain_all(lake.store)))

        results["after maintenance"] = phase(lake, early, late, repeats, warmup=False, before_each=compact)
        features_year_seconds = lake.materialize(FEATURES, FIRST_DAY, late)
        results["features table holds all days"] = phase(lake, early, late, repeats, warmup=False)

    report.note(
        f"setup: bronze range run of {FIRST_DAY}..{late} took {secs(bronze_seconds)}; "
        f"one maintenance of all lake tables took {secs(median(maintenance_seconds))} (median); "
        f"features range run of {FIRST_DAY}..{late} took {secs(features_year_seconds)}"
    )
    rows = []
    for name, result in results.items():
        times = result["times"]
        breakdown = result["breakdown"]
        for day in (early, late):
            parts = breakdown[day]  # type: ignore[index]
            rows.append(
                {
                    "phase": name,
                    "partition": f"{day} (day {(day - FIRST_DAY).days + 1})",
                    "run median": secs(median(times[day])),  # type: ignore[index]
                    "min..max s": spread(times[day]),  # type: ignore[index]
                    "features table after": result["files"],
                    **{label: ms(v) for label, v in parts.items()},
                }
            )
        value = median(times[late]) / median(times[early])  # type: ignore[index]
        target = TARGET if name != "features table holds all days" else None
        report.headline(f"features day {last_day_number} ÷ day {EARLY}, {name}", value, target)
    report.table(f"Single-partition features runs, median of {repeats} (parts: median time inside)", rows)
    early_before = median(results["before maintenance"]["times"][early])  # type: ignore[index]
    for name in ("after maintenance", "features table holds all days"):
        report.headline(
            f"features day {EARLY} {name} ÷ day {EARLY} before maintenance",
            median(results[name]["times"][early]) / early_before,  # type: ignore[index]
            None,
        )
    print(f"(ratios use the run medians; target {ratio(TARGET)} for day {last_day_number} ÷ day {EARLY})")
    return report.finish(args.json)


if __name__ == "__main__":
    main()
