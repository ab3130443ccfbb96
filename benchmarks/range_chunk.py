"""One run of a backfill, as the daemon launches it.

    python -m benchmarks.range_chunk [--floor] ROOT LANDING FIRST LAST

Bronze flights, bronze weather and the features of FIRST..LAST in one Dagster run
(`dg.materialize` with the range tags, on the lake `ROOT/lake`, whose reference tables
exist). `--floor`: the same process running do-nothing assets of the same shape over the
same partitions instead, what Dagster itself costs the run. Its baseline, the same work in
polars alone, is `benchmarks.bare_polars`. `benchmarks.scale_curves` runs each in its own
process so that the process's peak RSS is that of one run. Prints one JSON line; its
`done_at` (epoch seconds) is when the run ended, before the rows are counted back.
"""

from __future__ import annotations

import datetime as dt
import json
import resource
import sys
import time
from pathlib import Path

import dagster as dg
import polars as pl

from assets.partitions import range_tags
from benchmarks.backfill import floor_assets
from benchmarks.common import ASSETS, QUIET_RUN_CONFIG, Lake

KEYS = ("bronze/flights", "bronze/weather", "features/flight_features")


def step_seconds(instance: dg.DagsterInstance, run_id: str) -> dict[str, float]:
    """Seconds from each step's start to its success, from the run's event log."""
    started: dict[str, float] = {}
    took: dict[str, float] = {}
    for record in instance.all_logs(run_id):
        event = record.dagster_event
        if event is None or not event.step_key:
            continue
        if event.event_type == dg.DagsterEventType.STEP_START:
            started[event.step_key] = record.timestamp
        elif event.event_type == dg.DagsterEventType.STEP_SUCCESS and event.step_key in started:
            took[event.step_key] = record.timestamp - started[event.step_key]
    return took


def run_chunk(root: Path, landing: Path, first: dt.date, last: dt.date) -> dict[str, object]:
    lake = Lake(root, landing)
    selection = dg.AssetSelection.assets(*(dg.AssetKey.from_user_string(k) for k in KEYS))
    with dg.DagsterInstance.ephemeral() as instance:
        start = time.perf_counter()
        result = dg.materialize(
            ASSETS,
            selection=selection,
            resources=lake.resources,
            tags=range_tags(first, last),
            run_config=QUIET_RUN_CONFIG,
            instance=instance,
            raise_on_error=True,
        )
        wall = time.perf_counter() - start
        done_at = time.time()
        steps = step_seconds(instance, result.run_id)
    days = pl.col("flight_date").is_between(first, last)
    store = lake.store
    return {
        "seconds": wall,
        "done_at": done_at,
        "steps": steps,
        "flight_rows": store.scan("bronze/flights").filter(days).select(pl.len()).collect().item(),
        "weather_rows": store.scan("bronze/weather")
        .filter(pl.col("obs_date").is_between(first, last))
        .select(pl.len())
        .collect()
        .item(),
        "feature_rows": store.scan("features/flight_features").filter(days).select(pl.len()).collect().item(),
    }


def floor_chunk(first: dt.date, last: dt.date) -> dict[str, object]:
    """Dagster's own cost of the run: the same process and imports, three do-nothing assets shaped like
    the run's (`benchmarks.backfill.floor_assets`) over the same partitions."""
    with dg.DagsterInstance.ephemeral() as instance:
        start = time.perf_counter()
        dg.materialize(
            floor_assets(),
            tags=range_tags(first, last),
            run_config=QUIET_RUN_CONFIG,
            instance=instance,
            raise_on_error=True,
        )
        return {"seconds": time.perf_counter() - start, "done_at": time.time()}


def main(argv: list[str]) -> int:
    floor = argv[:1] == ["--floor"]
    argv = argv[1:] if floor else argv
    root, landing = Path(argv[0]), Path(argv[1])
    first, last = dt.date.fromisoformat(argv[2]), dt.date.fromisoformat(argv[3])
    out = floor_chunk(first, last) if floor else run_chunk(root, landing, first, last)
    # The process's high-water mark of resident memory (Linux reports KiB).
    out["peak_rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
