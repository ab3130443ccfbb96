"""Training at scale: samples/s and peak memory of the entrypoint on 1x, 10x and 100x training sets.

    python -m benchmarks.training_scale [--quick] [--training-set DIR] [--device auto|cpu|cuda] [--threads N]

The 1x set is the 2013 snapshot made by the real assets (as `benchmarks.training_throughput`
makes it; --quick: the first quarter) or --training-set. A Kx set is a snapshot folder of the
same format whose train split is the 1x train split tiled K times (flight numbers shifted per
tile, so keys stay unique), written one tile at a time; its validation split stays 1x, since
the figure is about the training loop. Each run is `python -m ml.training.train` as a
subprocess with the project's train params, a fixed number of full epochs (1x: 4, 10x: 2,
100x: 1; --quick: 2, 1, 1 on 1x, 2x, 4x); its samples/s is the median of its epochs as
timings.json records them (the training loop, reads of the encoded splits included), and its
peak RSS is the process's own `ru_maxrss` (`os.wait4` in a bare launcher: `LAUNCHER`). Every
set is trained with the default memory budget (4 GiB: the encoded splits stay in memory up to
10x, 100x goes to files), and 1x and 10x also with the budget at 0, which puts them in files.

On a machine shared with other work, `--threads 1` gives steadier figures: two torch threads
on two busy cores wait on each other at every operation (with the load average at 4, the 1x set
trained at 16k samples/s on two threads and at 160k on one).

Targets: samples/s at 100x ÷ at 1x >= 0.8; peak RSS at 100x ÷ at 10x, both from files, <= 1.1
(memory does not grow with the set once it is bigger than a window).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq
import yaml

from benchmarks.common import Report, arguments, ratio
from benchmarks.training_throughput import build_training_set
from ml.training.encoded import DEFAULT_MEMORY_BUDGET
from ml.training.params import load_params

PROJECT = Path(__file__).resolve().parents[1]
SCALES = {False: ((1, 4), (10, 2), (100, 1)), True: ((1, 2), (2, 1), (4, 1))}
"""(tiles of the train split, epochs) per run, full and --quick."""
SPEED_TARGET = 0.8
MEMORY_TARGET = 1.1
LAUNCHER = (
    "import os, subprocess, sys; from pathlib import Path; p = subprocess.Popen(sys.argv[2:]); "
    "_, status, usage = os.wait4(p.pid, 0); Path(sys.argv[1]).write_text(str(usage.ru_maxrss)); "
    "sys.exit(os.waitstatus_to_exitcode(status))"
)
"""Runs a command and writes its peak RSS (KiB). A child's ru_maxrss starts at its parent's resident
size (Linux keeps the larger of the old and the new address space's at exec), and this process
holds Dagster and whatever built the 1x set: `python -c pass` started from it reported 789 MB.
Started from this bare launcher instead, the figure is the entrypoint's own."""
TILE_ROW_GROUP = 131_072
FLIGHT_SHIFT = 10_000


def tile_snapshot(source: Path, folder: Path, tiles: int) -> Path:
    """A snapshot whose train split is `tiles` copies of the source's, written a copy at a time."""
    folder.mkdir(parents=True)
    train = pl.read_parquet(source / "train.parquet")
    with pq.ParquetWriter(folder / "train.parquet", train.to_arrow().schema, compression="zstd") as writer:
        for k in range(tiles):
            tile = train.with_columns(pl.col("flight") + k * FLIGHT_SHIFT)
            writer.write_table(tile.to_arrow(), row_group_size=TILE_ROW_GROUP)
    for name in ("validation.parquet", "test.parquet"):
        (folder / name).write_bytes((source / name).read_bytes())
    manifest = json.loads((source / "manifest.json").read_text())
    manifest["splits"]["train"]["rows"] = train.height * tiles
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return folder


@dataclass
class Run:
    tiles: int
    budget: int
    train_rows: int
    samples_per_second: float
    epochs: int
    data: str
    peak_rss: int
    wall: float
    prepare: float | None


def train_once(
    snapshot: Path, work: Path, section: dict[str, Any], budget: int, device: str, threads: int | None
) -> Run:
    """The entrypoint as a subprocess; its epochs' samples/s from timings.json, its own peak RSS."""
    name = f"{snapshot.name}-{budget}"
    params = work / f"params-{name}.yaml"
    params.write_text(yaml.safe_dump({"train": section}))
    out, log = work / f"model-{name}", work / f"train-{name}.log"
    command = [sys.executable, "-m", "ml.training.train", "--training-set", str(snapshot), "--out", str(out)]
    command += ["--params", str(params), "--device", device, "--memory-budget", str(budget)]
    peak = work / f"peak-{name}.txt"
    env = {**os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
    start = time.perf_counter()
    with log.open("w") as handle:
        code = subprocess.call(
            [sys.executable, "-c", LAUNCHER, str(peak), *command],
            cwd=PROJECT,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    wall = time.perf_counter() - start
    printed = log.read_text()
    if code != 0:
        raise RuntimeError(f"ml.training.train failed on {snapshot}:\n{printed[-3000:]}")
    timings = json.loads((out / "timings.json").read_text())
    prepared = re.search(r"^encoded .* in (\d+(?:\.\d+)?)s$", printed, re.MULTILINE)
    return Run(
        tiles=0,
        budget=budget,
        train_rows=pq.ParquetFile(snapshot / "train.parquet").metadata.num_rows,
        samples_per_second=statistics.median(row["samples_per_second"] for row in timings),
        epochs=len(timings),
        data=timings[0]["data"],
        peak_rss=int(peak.read_text()) * 1024,  # KiB on Linux
        wall=wall,
        prepare=float(prepared.group(1)) if prepared else None,
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--training-set", type=Path, default=None, help="an existing 1x snapshot folder")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch intra-op threads of the training runs (OMP_NUM_THREADS; default: torch's own)",
    )


def main(argv: Sequence[str] | None = None) -> Report:
    args = arguments(__doc__.split("\n\n")[0], argv, add_arguments)
    report = Report("training_scale", args.quick)
    section = load_params(PROJECT / "params.yaml")["train"]
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="bench-training-scale-") as tmp:
        work = Path(tmp)
        base = args.training_set or build_training_set(work, args.quick)
        for tiles, epochs in SCALES[args.quick]:
            snapshot = base if tiles == 1 else tile_snapshot(base, work / f"x{tiles}", tiles)
            settings = {**section, "max_epochs": epochs, "patience": epochs}
            budgets = (
                (DEFAULT_MEMORY_BUDGET,)
                if tiles == max(t for t, _ in SCALES[args.quick])
                else (DEFAULT_MEMORY_BUDGET, 0)
            )
            for budget in budgets:
                run = train_once(snapshot, work, settings, budget, args.device, args.threads)
                run.tiles = tiles
                runs.append(run)
                print(f"{tiles}x budget {budget}: {run}", flush=True)
            if snapshot != base:
                for path in snapshot.iterdir():
                    path.unlink()  # the next, larger set needs the disk and the page cache
    report.table(
        f"Entrypoint training, batch {section['batch_size']}, device {args.device}, "
        f"threads {args.threads or 'default'}, peak RSS of the process",
        [
            {
                "train set": f"{r.tiles}x ({r.train_rows:,} rows)",
                "memory budget": f"{r.budget / 2**30:.0f} GiB",
                "encoded splits in": r.data,
                "epochs": r.epochs,
                "samples/s (median)": f"{r.samples_per_second:,.0f}",
                "÷ 1x": ratio(r.samples_per_second / runs[0].samples_per_second),
                "peak RSS": f"{r.peak_rss / 2**20:,.0f} MiB",
                "fit + encode": "-" if r.prepare is None else f"{r.prepare:.1f} s",
                "wall": f"{r.wall:.0f} s",
            }
            for r in runs
        ],
    )
    auto = {r.tiles: r for r in runs if r.budget == DEFAULT_MEMORY_BUDGET}
    files = {r.tiles: r for r in runs if r.data == "files"}
    largest, middle = sorted(auto)[-1], sorted(auto)[-2]
    speed = auto[largest].samples_per_second / auto[1].samples_per_second
    report.headline(
        f"samples/s at {largest}x ÷ at 1x", speed, SPEED_TARGET, "higher is better", at_least=True
    )
    if largest in files and middle in files:
        memory = files[largest].peak_rss / files[middle].peak_rss
        report.headline(f"peak RSS at {largest}x ÷ at {middle}x, splits in files", memory, MEMORY_TARGET)
    report.note(f"load average (1, 5, 15 min) at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return report.finish(args.json)


if __name__ == "__main__":
    main()
