"""`make demo`: the whole chain on the embedded default, from landing files to a champion (or a refusal).

    python -m devtools.demo [--shift-days N] [--scale K]

Replays 2013 (moved N days later, at K times the flights a day), ingests and builds features for every day in one range run, snapshots the
publishes the online snapshot the model server reads, snapshots the training set, trains,
evaluates and promotes, then prints per-month table sizes and the leaderboard. A candidate
the gate refuses is a correct outcome: the demo says so and exits 0; any other failure exits 1.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import polars as pl

from assets.partitions import SPAN, range_tags
from ml.evaluation.leaderboard import leaderboard, leaderboard_text
from ml.ingest.replay import replay
from ml.lake.delta import DeltaStore
from ml.registry.model_registry import ModelRegistry, ModelVersion, gate_passed
from ml.text_tables import text_table
from orchestration.definitions import build_definitions
from orchestration.profiles import build_resources

SOURCE_FIRST, SOURCE_LAST = dt.date(2013, 1, 1), dt.date(2013, 12, 31)
QUIET = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}


def run(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    job: str,
    tags: dict[str, str] | None = None,
    must_succeed: bool = True,
) -> bool:
    print(f"\n== {job}", flush=True)
    result = defs.resolve_job_def(job).execute_in_process(
        instance=instance, tags=tags or {}, run_config=QUIET, raise_on_error=False
    )
    if not result.success and must_succeed:
        raise SystemExit(f"run {result.run_id} of {job} failed: see `make dev`, Runs")
    if not result.success:
        print(f"run {result.run_id} of {job} failed: see `make dev`, Runs", flush=True)
    return result.success


def table_sizes(store: DeltaStore, first: dt.date, last: dt.date) -> str:
    start = first.replace(day=1)
    months = pl.DataFrame({"month": pl.date_range(start, last, "1mo", eager=True).dt.strftime("%Y-%m")})
    for table, column, name in (
        ("bronze/flights", "flight_date", "flights"),
        ("bronze/flights_rejects", "day", "rejects"),
        ("bronze/weather", "obs_date", "weather"),
        ("features/flight_features", "flight_date", "features"),
    ):
        counts = store.read(table).group_by(pl.col(column).dt.strftime("%Y-%m").alias("month")).len(name=name)
        months = months.join(counts, on="month", how="left")
    rows = months.fill_null(0).to_dicts()
    versions = [
        {"table": t, "delta_version": store.version(t), "uri": store.uri(t)}
        for t in ("bronze/flights", "bronze/weather", "features/flight_features", "registry/models")
    ]
    return text_table(rows) + "\n\n" + text_table(versions)


GATE_VERDICTS = ("beats_champion", "beats_boosted_trees", "calibrated")


def model_board(registry: ModelRegistry) -> str:
    latest = registry.latest_evaluated()
    if latest is None:
        return "(no evaluated model)"
    rows = [(f"v{latest.version} ({latest.status})", "candidate", latest.metrics["test"])]
    if latest.metrics.get("champion"):
        rows.append(("previous champion", "champion", latest.metrics["champion"]))
    rows += [(name, "baseline", m) for name, m in latest.metrics["baselines"].items()]
    gate = latest.metrics["gate"]
    verdicts = "".join(f"\n- {gate[name]}" for name in GATE_VERDICTS if name in gate)
    return (
        leaderboard_text(leaderboard(rows))
        + f"\n\ngate: {'passed' if gate['passed'] else 'FAILED'}{verdicts}"
    )


def refused_by_the_gate(registry: ModelRegistry) -> ModelVersion | None:
    """The newest candidate when the gate rejected it: a correct outcome of the run, not a failure."""
    latest = registry.latest_evaluated()
    if latest is None or latest.status != "rejected" or gate_passed(latest):
        return None
    return latest


def in_span(first: dt.date, last: dt.date, argv: list[str]) -> int | None:
    """Re-run the demo with partitions over first..last when the loaded ones do not hold them.

    The partitions are read from PLATFORM_FIRST_DAY / PLATFORM_LAST_DAY when the code loads,
    so a shifted demo sets them for a fresh process rather than for this one.
    """
    if SPAN.first <= first and (SPAN.last is None or last <= SPAN.last):
        return None
    if os.environ.get("PLATFORM_FIRST_DAY"):
        raise SystemExit(
            f"the partitions {SPAN.label()} (PLATFORM_FIRST_DAY) do not hold the replay {first}..{last}"
        )
    env = {**os.environ, "PLATFORM_FIRST_DAY": first.isoformat(), "PLATFORM_LAST_DAY": last.isoformat()}
    print(f"partitions {first}..{last} for the shifted replay (PLATFORM_FIRST_DAY, PLATFORM_LAST_DAY)")
    return subprocess.run([sys.executable, "-m", "devtools.demo", *argv], env=env, check=False).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--shift-days", type=int, default=0, help="deliver 2013 this many days later")
    parser.add_argument("--scale", type=int, default=1, help="K times the flights a day")
    args = parser.parse_args(argv)
    first = SOURCE_FIRST + dt.timedelta(days=args.shift_days)
    last = SOURCE_LAST + dt.timedelta(days=args.shift_days)
    again = in_span(first, last, sys.argv[1:] if argv is None else argv)
    if again is not None:
        return again
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(Path(".dagster").resolve())))
    home.mkdir(parents=True, exist_ok=True)
    resources = build_resources(os.environ)
    landing = Path(resources["landing"].root)  # type: ignore[attr-defined]
    outcomes = replay(landing, first, last, shift_days=args.shift_days, scale=args.scale)
    print(
        f"replayed {first}..{last} into {landing}: {sum(o.status == 'written' for o in outcomes)} new file(s)"
    )
    defs = build_definitions()
    instance = dg.DagsterInstance.get()
    run(defs, instance, "reference_data")
    run(
        defs,
        instance,
        "daily_ingestion",
        range_tags(first, last),
    )
    run(defs, instance, "online_snapshot")
    promoted = run(defs, instance, "train_evaluate_promote", must_succeed=False)
    store = resources["lake"].store()  # type: ignore[attr-defined]
    print("\n" + table_sizes(store, first, last))
    print("\nleaderboard (test split: November and December)\n" + model_board(ModelRegistry(store)))
    print(
        f"\nDagster instance: {home}\nOpen the UI with `make dev`, then http://127.0.0.1:3000 "
        "(Assets shows every table and model; Runs shows these runs).\n"
        "Registry: python -m ml.registry.cli list\n"
        "Lineage of a model, down to its landing files: python -m ml.lineage --version N\n"
        "Rebuild it byte for byte: python -m ml.reproduce --version N\n"
        "Model server: set PLATFORM_SERVING_TOKEN and PLATFORM_SERVING_ADMIN_TOKEN, then `make serve` "
        "(http://127.0.0.1:8080, README: Serving)"
    )
    if promoted:
        return 0
    refused = refused_by_the_gate(ModelRegistry(store))
    if refused is None:
        return 1
    print(
        f"\nThe gate refused v{refused.version} (verdicts above), so there is no champion to serve "
        "(README: Quality). The run that refused it failed its blocking checks, as it should.",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
