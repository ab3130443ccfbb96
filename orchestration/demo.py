"""`make demo`: replay January 2013, ingest and build features in one range run, summarize."""

from __future__ import annotations

import datetime as dt
import os
import sys
from pathlib import Path

import dagster as dg
import polars as pl

from ml.replay import replay
from ml.reporting import text_table
from orchestration.definitions import build_definitions
from orchestration.profiles import build_resources

FIRST, LAST = dt.date(2013, 1, 1), dt.date(2013, 1, 31)
RANGE_TAGS = ("dagster/asset_partition_range_start", "dagster/asset_partition_range_end")


def run_range(defs: dg.Definitions, instance: dg.DagsterInstance, first: dt.date, last: dt.date) -> None:
    tags = dict(zip(RANGE_TAGS, (first.isoformat(), last.isoformat()), strict=True))
    result = defs.resolve_job_def("daily_ingestion").execute_in_process(instance=instance, tags=tags)
    if not result.success:
        raise SystemExit(f"run {result.run_id} failed")


def summary(lake_root: str) -> str:
    resources = build_resources(os.environ)
    store = resources["lake"].store()  # type: ignore[attr-defined]
    per_day = []
    for table, column in (
        ("bronze/flights", "flight_date"),
        ("bronze/flights_rejects", "day"),
        ("bronze/weather", "obs_date"),
        ("features/flight_features", "flight_date"),
    ):
        counts = (
            store.read_days(table, column, FIRST, LAST)
            .group_by(column)
            .len()
            .rename({column: "day", "len": table})
        )
        per_day.append(counts)
    days = pl.DataFrame({"day": pl.date_range(FIRST, LAST, eager=True)})
    for counts in per_day:
        days = days.join(counts, on="day", how="left")
    days = days.fill_null(0)
    rows = [
        {
            "day": r["day"],
            "flights": r["bronze/flights"],
            "rejects": r["bronze/flights_rejects"],
            "weather": r["bronze/weather"],
            "features": r["features/flight_features"],
        }
        for r in days.iter_rows(named=True)
    ]
    versions = [
        {"table": t, "delta_version": store.version(t), "uri": store.uri(t)}
        for t in ("bronze/flights", "bronze/weather", "features/flight_features")
    ]
    return text_table(rows) + "\n\n" + text_table(versions)


def main() -> int:
    data_dir = Path(os.environ.get("PLATFORM_DATA_DIR", ".data"))
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(Path(".dagster").resolve())))
    home.mkdir(parents=True, exist_ok=True)
    landing = Path(os.environ.get("PLATFORM_LANDING_URI", data_dir / "landing"))
    outcomes = replay(landing, FIRST, LAST)
    print(
        f"replayed {FIRST}..{LAST} into {landing}: {sum(o.status == 'written' for o in outcomes)} new file(s)"
    )
    defs = build_definitions()
    instance = dg.DagsterInstance.get()
    if not defs.resolve_job_def("reference_data").execute_in_process(instance=instance).success:
        return 1
    run_range(defs, instance, FIRST, LAST)
    print(summary(str(data_dir / "lake")))
    print(
        f"\nDagster instance: {home}\nOpen the UI with `make dev`, then http://127.0.0.1:3000 "
        "(Assets > features/flight_features shows the partitions, Runs shows this run)."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
