"""Cost curves of a year's backfill at 1x, 10x and 100x traffic, and of ten years at 1x.

    python -m benchmarks.scale_curves [--quick] [--scales 1,10,100] [--years 10] [--budget-gib 4]

For each traffic K: 2013 is replayed at `--scale K` (`python -m ml.replay`) into a temporary
landing zone, the reference tables are written, and the backfill of the year is planned as
the code location plans it (`ml/ingest/run_memory.py`: PLATFORM_RUN_MEMORY_GIB and
PLATFORM_FLIGHTS_PER_DAY = K x the source's mean). Its runs are then executed one after the
other, each in its own process, as the local instance's backfill pool (one run at a time)
launches them: bronze flights, bronze weather and the features of the run's days. Every run's
peak RSS is its process's high-water mark (getrusage), so "peak RSS of the backfill" is that of the
largest run, the whole process (interpreter, Dagster, polars, the data). A run's time is
from its process's start to the end of its work: interpreter start, imports, the run; the
rows the benchmark counts back afterwards are not part of it (the bare script's likewise).

Against it, in the same pass, the bare polars script over the same runs' days
(`benchmarks.bare_polars`: the range's CSVs read in the contract's types, bronze written
as Parquet, the trailing window read back from the Parquet of earlier runs, `build_features`,
the features written as Parquet; no validation, Delta, lineage or Dagster, not even
imported), also one process per run. Targets: peak RSS <= the budget at every K;
backfill ÷ bare polars at 100x <= 1.5. Dagster's floor, for the reading: each run once more
with do-nothing assets of the same shape over the same partitions, in the same kind of
process (`benchmarks.range_chunk --floor`): interpreter, imports, instance and run.
Rows/s: flights + weather rows over the bronze steps' seconds (ingestion), feature rows
over the features step's seconds.

`--years N` also replays N years at 1x (`--repeat`) and backfills them the same way.
--quick: a month at 1x and 10x only.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks.common import Lake, Report, arguments, ratio
from ml.features.flight_features import lookback_days
from ml.ingest.run_memory import GIB, run_memory

SOURCE_FLIGHTS_PER_DAY = 336_776 / 365
PROJECT = Path(__file__).resolve().parents[1]


def _extra(parser) -> None:  # type: ignore[no-untyped-def]
    parser.add_argument("--scales", default="1,10,100", help="comma-separated traffic multiples")
    parser.add_argument(
        "--years", type=int, default=10, help="years of 1x traffic for the long curve (0: off)"
    )
    parser.add_argument("--budget-gib", type=float, default=4.0, help="PLATFORM_RUN_MEMORY_GIB of the plan")


def _python(span: tuple[dt.date, dt.date], settings: dict[str, str], *args: str) -> tuple[dict, int, float]:
    """Run `python -m ...` in its own process with partitions over `span` and the code location's
    `settings` (the memory plan's): its JSON line, its peak RSS (bytes) and wall seconds from
    the process's start to the end of its work (its `done_at`: the rows the benchmark counts
    back afterwards are not part of a run)."""
    env = {**os.environ, **settings, "PLATFORM_FIRST_DAY": str(span[0]), "PLATFORM_LAST_DAY": str(span[1])}
    start = time.time()
    done = subprocess.run([sys.executable, "-m", *args], cwd=PROJECT, capture_output=True, text=True, env=env)
    if done.returncode:
        raise RuntimeError(f"python -m {' '.join(args)} exited {done.returncode}: {done.stderr[-3000:]}")
    out = json.loads([line for line in done.stdout.splitlines() if line.startswith("{")][-1])
    return out, int(out["peak_rss"]), float(out["done_at"]) - start


def _replay(landing: Path, first: dt.date, last: dt.date, scale: int, repeat: bool) -> float:
    start = time.perf_counter()
    args = ["--landing", str(landing), "--start", str(first), "--end", str(last), "--scale", str(scale)]
    subprocess.run(
        [sys.executable, "-m", "ml.replay", *args, *(["--repeat"] if repeat else [])],
        cwd=PROJECT,
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - start


def chunks(first: dt.date, last: dt.date, days_per_run: int) -> list[tuple[dt.date, dt.date]]:
    out, start = [], first
    while start <= last:
        end = min(last, start + dt.timedelta(days=days_per_run - 1))
        out.append((start, end))
        start = end + dt.timedelta(days=1)
    return out


def backfill(work: Path, label: str, first: dt.date, last: dt.date, scale: int, budget_gib: float) -> dict:
    root = work / "".join(c if c.isalnum() else "-" for c in label)  # a plain folder name
    landing = root / "landing"
    replay_seconds = _replay(landing, first, last, scale, repeat=last.year > 2013)
    Lake(root, landing).reference()
    per_day = int(SOURCE_FLIGHTS_PER_DAY * scale)
    settings = {"PLATFORM_RUN_MEMORY_GIB": str(budget_gib), "PLATFORM_FLIGHTS_PER_DAY": str(per_day)}
    plan = run_memory(settings, lookback_days())
    runs = chunks(first, last, plan.days_per_run())
    totals = {
        "seconds": 0.0,
        "bare_seconds": 0.0,
        "floor_seconds": 0.0,
        "ingest_seconds": 0.0,
        "features_seconds": 0.0,
    }
    rows = {"flight_rows": 0, "weather_rows": 0, "feature_rows": 0}
    peak = bare_peak = 0
    for start, end in runs:
        span = (str(start), str(end))
        out, rss, wall = _python(
            (first, last), settings, "benchmarks.range_chunk", str(root), str(landing), *span
        )
        bare, bare_rss, bare_wall = _python(
            (first, last),
            settings,
            "benchmarks.bare_polars",
            str(root / "bare"),
            str(landing),
            *span,
            str(plan.days_per_slice()),
        )
        _, _, floor_wall = _python(
            (first, last), settings, "benchmarks.range_chunk", "--floor", str(root), str(landing), *span
        )
        if bare["feature_rows"] != out["feature_rows"]:
            raise RuntimeError(
                f"{start}..{end}: bare built {bare['feature_rows']} rows, the run {out['feature_rows']}"
            )
        steps = out["steps"]
        totals["seconds"] += wall
        totals["bare_seconds"] += bare_wall
        totals["floor_seconds"] += floor_wall
        totals["ingest_seconds"] += steps.get("bronze__flights", 0.0) + steps.get("bronze__weather", 0.0)
        totals["features_seconds"] += steps.get("features__flight_features", 0.0)
        for key in rows:
            rows[key] += int(out[key])
        peak, bare_peak = max(peak, rss), max(bare_peak, bare_rss)
        print(
            f"{label} {start}..{end}: {wall:.1f}s ({rss / GIB:.2f} GiB), bare {bare_wall:.1f}s, "
            f"Dagster's floor {floor_wall:.1f}s",
            flush=True,
        )
    return {
        "label": label,
        "days": (last - first).days + 1,
        "planned": plan.describe(),
        "runs": len(runs),
        "replay_seconds": replay_seconds,
        "peak_rss": peak,
        "bare_peak_rss": bare_peak,
        "budget": plan.budget_bytes,
        **totals,
        **rows,
    }


def _row(result: dict) -> dict[str, object]:
    return {
        "traffic": result["label"],
        "days": result["days"],
        "runs": result["runs"],
        "flights": f"{result['flight_rows']:,}",
        "ingestion rows/s": f"{(result['flight_rows'] + result['weather_rows']) / result['ingest_seconds']:,.0f}",
        "features rows/s": f"{result['feature_rows'] / result['features_seconds']:,.0f}",
        "backfill": f"{result['seconds']:.1f} s",
        "bare polars": f"{result['bare_seconds']:.1f} s",
        "backfill ÷ bare": ratio(result["seconds"] / result["bare_seconds"]),
        "Dagster's floor": f"{result['floor_seconds']:.1f} s",
        "net of the floor ÷ bare": ratio(
            (result["seconds"] - result["floor_seconds"]) / result["bare_seconds"]
        ),
        "peak RSS": f"{result['peak_rss'] / GIB:.2f} GiB",
        "budget": f"{result['budget'] / GIB:.1f} GiB",
    }


def main(argv: Sequence[str] | None = None) -> Report:
    args = arguments(__doc__.split("\n\n")[0], argv, _extra)
    report = Report("scale_curves", args.quick)
    scales = [1, 10] if args.quick else [int(s) for s in args.scales.split(",") if s]
    first = dt.date(2013, 1, 1)
    last = dt.date(2013, 1, 31) if args.quick else dt.date(2013, 12, 31)
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        work = Path(tmp)
        for scale in scales:
            results.append(backfill(work, f"{scale}x", first, last, scale, args.budget_gib))
            shutil.rmtree(work / f"{scale}x")  # a 100x year is gigabytes
        if args.years and not args.quick:
            end = dt.date(2013 + args.years - 1, 12, 31)
            results.append(backfill(work, f"1x, {args.years} years", first, end, 1, args.budget_gib))
    report.table(
        "Backfill of a year by traffic (runs planned under the budget, one at a time)",
        [_row(r) for r in results],
    )
    report.table(
        "Planned runs and replay time",
        [
            {"traffic": r["label"], "plan": r["planned"], "replay": f"{r['replay_seconds']:.1f} s"}
            for r in results
        ],
    )
    for r in results:
        report.headline(f"{r['label']}: backfill peak RSS ÷ budget", r["peak_rss"] / r["budget"], 1.0)
    for r in results:
        target = 1.5 if r["label"] == "100x" else None  # the target is set at 100x traffic
        report.headline(
            f"{r['label']}: backfill ÷ bare polars script", r["seconds"] / r["bare_seconds"], target
        )
    return report.finish(args.json)


if __name__ == "__main__":
    main()
