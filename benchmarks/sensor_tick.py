"""Landing sensor tick: duration with 1, 100, 730 and 1,000 new files, ÷ a bare listing of the same folders.

    python -m benchmarks.sensor_tick [--quick]

A tick is `landing_sensor` evaluated in-process on a real landing zone (what the daemon
runs, without the gRPC hop): list both dataset folders, compare each file's signature
with the cursor, batch new days into range runs. The baseline is `os.scandir` of the same
folders with a stat of every file. 730 is every day file 2013 admits (flights and weather
for 365 days). The 1,000-file tick holds those 730 plus 270 new files named for days of
2014, which the partitions do not admit: the tick requests the 730 and moves the 270 to
quarantine with their reason files, so each of its repeats starts from a fresh copy of
the zone (the copy is not timed). `plan()` alone is also timed on 1,000 and 10,000
synthetic files to show how the logic scales.
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
from ml.ingest.landing_zone import LandedFile
from ml.ingest.watch import plan
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


def subset(source: Path, target: Path, files: int) -> int:
    """A landing zone of `files` new day files from `source` (alternating datasets).

    Past the 730 files of 2013, the rest are copies named for days of 2014: new files the
    tick must handle but not request. Returns how many of those there are.
    """
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
    outside = files - copied
    for i in range(outside):
        dataset = DATASETS[i % 2]
        day = dt.date(2014, 1, 1) + dt.timedelta(days=i // 2)
        shutil.copy2(source / dataset / names[i // 2].name, target / dataset / f"{day}.csv")
    return outside


def main(argv: Sequence[str] | None = None) -> Report:
    args = arguments(__doc__.split("\n\n")[0], argv)
    report = Report("sensor_tick", args.quick)
    sizes = (1, 100, 730, 1_000)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-sensor-") as tmp:
        work = Path(tmp)
        last = dt.date(2013, 3, 31) if args.quick else dt.date(2013, 12, 31)
        source = replay_landing(work / "source", dt.date(2013, 1, 1), last)
        for n in sizes:
            if args.quick and n > 180:
                continue
            pristine = work / f"landing-{n}"
            outside = subset(source, pristine, n)
            ticks, lists, runs, quarantined = [], [], 0, 0
            for repeat in range(REPEATS):
                landing, quarantine = pristine, work / f"quarantine-{n}"
                if outside:
                    landing = work / f"landing-{n}-{repeat}"
                    quarantine = work / f"quarantine-{n}-{repeat}"
                    shutil.copytree(pristine, landing)
                lists.append(listing(landing))
                seconds, runs = tick(landing, quarantine)
                ticks.append(seconds)
                quarantined = sum(1 for p in quarantine.rglob("*.csv")) if quarantine.exists() else 0
            if quarantined != outside:
                raise RuntimeError(f"the tick quarantined {quarantined} files, expected {outside}")
            t, b = statistics.median(ticks), statistics.median(lists)
            rows.append(
                {
                    "new files": n,
                    "runs requested": runs,
                    "quarantined": quarantined,
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
