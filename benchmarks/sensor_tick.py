"""Landing sensor tick: duration with 1, 100 and all 730 new files, ÷ a bare listing of the same folders.

    python -m benchmarks.sensor_tick [--quick]

A tick is `landing_sensor` evaluated in-process on a real landing zone (what the daemon
runs, without the gRPC hop): list both dataset folders, compare each file's signature
with the cursor, batch new days into range runs. The baseline is `os.scandir` of the same
folders with a stat of every file. 730 is every day file 2013 admits (flights and weather
for 365 days); names outside the partitions are quarantined, not requested. `plan()`
alone is also timed on 1,000 and 10,000 synthetic files to show how the logic scales.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import dagster as dg

from benchmarks.common import Report, arguments, ratio, replay_landing
from ml.landing_watch import plan
from ml.landing_zone import LandedFile
from orchestration.sensors import landing_sensor
from resources import LandingResource, LandingWatch

REPEATS = 7
DATASETS = ("flights", "weather")


def tick(landing: Path, quarantine: Path) -> tuple[float, int]:
    context = dg.build_sensor_context(
        resources={
            "landing": LandingResource(root=str(landing), quarantine_root=str(quarantine)),
            "landing_watch": LandingWatch(settle_seconds=0),
        }
    )
    start = time.perf_counter()
    result = landing_sensor(context)
    return time.perf_counter() - start, len(result.run_requests or [])  # type: ignore[union-attr]


def listing(landing: Path) -> float:
    start = time.perf_counter()
    for dataset in DATASETS:
        with os.scandir(landing / dataset) as entries:
            for entry in entries:
                entry.stat()
    return time.perf_counter() - start


def subset(source: Path, target: Path, files: int) -> None:
    """A landing zone holding the first `files` day files of `source` (alternating datasets)."""
    names = sorted((source / "flights").iterdir())
    for dataset in DATASETS:
        (target / dataset).mkdir(parents=True)
    shutil.copytree(source / "reference", target / "reference")
    copied = 0
    for path in names:
        for dataset in DATASETS:
            if copied < files:
                shutil.copy2(source / dataset / path.name, target / dataset / path.name)
                copied += 1


def main(argv: Sequence[str] | None = None) -> Report:
    args = arguments(__doc__.split("\n\n")[0], argv)
    report = Report("sensor_tick", args.quick)
    sizes = (1, 100, 730)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-sensor-") as tmp:
        work = Path(tmp)
        last = dt.date(2013, 3, 31) if args.quick else dt.date(2013, 12, 31)
        source = replay_landing(work / "source", dt.date(2013, 1, 1), last)
        for n in sizes:
            if args.quick and n > 180:
                continue
            landing = work / f"landing-{n}"
            subset(source, landing, n)
            ticks, lists, runs = [], [], 0
            for _ in range(REPEATS):
                seconds, runs = tick(landing, work / f"quarantine-{n}")
                ticks.append(seconds)
                lists.append(listing(landing))
            t, b = statistics.median(ticks), statistics.median(lists)
            rows.append(
                {
                    "new files": n,
                    "runs requested": runs,
                    "tick (median)": f"{t * 1e3:.1f} ms",
                    "bare listing": f"{b * 1e3:.2f} ms",
                    "tick ÷ listing": ratio(t / b),
                    "share of the 60 s sensor timeout": f"{t / 60:.3%}",
                }
            )
            report.headline(f"tick with {n} new file(s) ÷ bare listing", t / b, None, f"{t * 1e3:.1f} ms")
    report.table(f"Landing sensor tick, median of {REPEATS} (each tick sees every file as new)", rows)

    now = dt.datetime(2026, 11, 23, tzinfo=dt.UTC)
    old = now - dt.timedelta(hours=1)
    synthetic = []
    for n in (1_000, 10_000):
        files = [
            LandedFile("flights", dt.date(2000, 1, 1) + dt.timedelta(days=i), f"f/{i}.csv", f"{i}:1", old)
            for i in range(n)
        ]
        times = []
        for _ in range(REPEATS):
            start = time.perf_counter()
            plan(files, {}, now, 10, 31)
            times.append(time.perf_counter() - start)
        synthetic.append({"files": n, "plan() median": f"{statistics.median(times) * 1e3:.1f} ms"})
    report.table("plan() alone on synthetic files (no I/O)", synthetic)
    return report.finish(args.json)


if __name__ == "__main__":
    main()
