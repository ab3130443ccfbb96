"""Run every benchmark, each in its own process, and print a summary of the ratios against targets.

    python -m benchmarks.run_all [--quick] [--only NAME ...] [--markdown FILE]

`make bench` runs it without options. --markdown writes the machine, the command and every
table as Markdown (the skeleton of benchmarks/RESULTS.md).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path

from benchmarks.common import target_text
from ml.text_tables import text_table

BENCHMARKS = (
    "delta_write",
    "delta_layout",
    "incremental_features",
    "backfill",
    "scale_curves",
    "log_growth",
    "training_throughput",
    "training_scale",
    "dvc_snapshot",
    "sensor_tick",
    "control_plane",
    "serving_latency",
    "serving_load",
    "prediction_log_writer",
)


def _first_line(path: str, prefix: str) -> str:
    try:
        with Path(path).open() as lines:
            for line in lines:
                if line.startswith(prefix):
                    return line.split(":" if ":" in line else "=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "unknown"


def machine() -> dict[str, str]:
    mem_kb = _first_line("/proc/meminfo", "MemTotal").split()[0]
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "CPU": _first_line("/proc/cpuinfo", "model name"),
        "cores": f"{os.cpu_count()} logical ({usable} usable by this process)",
        "RAM": f"{int(mem_kb) / 1024**2:.1f} GiB" if mem_kb.isdigit() else "unknown",
        "OS": f"{_first_line('/etc/os-release', 'PRETTY_NAME=')}, kernel {platform.release()}",
        "Python": platform.python_version(),
        "packages": ", ".join(
            f"{p} {version(p)}" for p in ("polars", "deltalake", "dagster", "pyarrow", "holidays")
        ),
    }


def _load() -> str:
    """Other processes on the machine skew timings; the load average says whether there were any."""
    return ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "unknown"


def _markdown_table(rows: list[dict[str, object]]) -> str:
    if not rows:
        return "(nothing)"
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def _headline_rows(results: list[dict]) -> list[dict[str, object]]:
    return [
        {
            "benchmark": r["name"],
            "ratio": h["what"],
            "value": f"{h['ratio']:.2f}x",
            "target": target_text(h),
            "met": {None: "n/a", True: "yes", False: "NO"}[h["met"]],
        }
        for r in results
        for h in r["headlines"]
    ]


def markdown(results: list[dict], info: dict[str, str], command: str, started: str, total: float) -> str:
    out = [
        "# Benchmark results",
        "",
        f"- date: {started}",
        *(f"- {k}: {v}" for k, v in info.items()),
        f"- command: `{command}`",
        f"- total wall time: {total:.0f} s",
        "",
        "## Summary",
        "",
        _markdown_table(_headline_rows(results)),
    ]
    for r in results:
        out += ["", f"## {r['name']}", ""]
        for title, rows in r["tables"].items():
            out += [f"**{title}**", "", _markdown_table(rows), ""]
        out += [f"- note: {n}" for n in r["notes"]]
    return "\n".join(out) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="pass --quick to every benchmark")
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, default=list(BENCHMARKS))
    parser.add_argument("--markdown", type=Path, default=None, help="write the results as Markdown")
    args = parser.parse_args(argv)
    info = machine()
    info["load average (1, 5, 15 min) at start"] = _load()
    started = dt.datetime.now(dt.UTC).strftime("%a %b %d %H:%M:%S UTC %Y")
    command = "python -m benchmarks.run_all" + (" --quick" if args.quick else "")
    print(f"benchmarks started {started}")
    for key, value in info.items():
        print(f"  {key}: {value}")
    results: list[dict] = []
    failed: list[str] = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-results-") as tmp:
        for name in args.only:
            out = Path(tmp) / f"{name}.json"
            cmd = [sys.executable, "-m", f"benchmarks.{name}", "--json", str(out)]
            cmd += ["--quick"] if args.quick else []
            print(
                f"\n===== {name} ({' '.join(cmd[1:3])}{' --quick' if args.quick else ''}) =====", flush=True
            )
            t0 = time.perf_counter()
            code = subprocess.call(cmd)
            print(f"===== {name}: {time.perf_counter() - t0:.0f} s, exit {code} =====", flush=True)
            if code != 0 or not out.exists():
                failed.append(name)
                continue
            results.append(json.loads(out.read_text()))
    total = time.perf_counter() - start
    info["load average (1, 5, 15 min) at end"] = _load()
    print(f"load average at end: {info['load average (1, 5, 15 min) at end']}")
    print(f"\nSummary ({total:.0f} s in all{', --quick: numbers not meaningful' if args.quick else ''})")
    print(text_table(_headline_rows(results)))
    if failed:
        print(f"FAILED: {', '.join(failed)}", file=sys.stderr)
    if args.markdown is not None:
        args.markdown.write_text(markdown(results, info, command, started, total))
        print(f"wrote {args.markdown}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
