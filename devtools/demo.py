"""`make demo`: the whole chain on the embedded default, from landing files to a champion (or a refusal).

Replays 2013, ingests and builds features for every day in one range run, snapshots the
publishes the online snapshot the model server reads, snapshots the training set, trains,
evaluates and promotes, then prints per-month table sizes and the leaderboard. A candidate
the gate refuses is a correct outcome: the demo says so and exits 0; any other failure exits 1.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from pathlib import Path

import dagster as dg
import polars as pl

from assets.partitions import range_tags
from ml.evaluation.leaderboard import leaderboard, leaderboard_text
from ml.ingest.replay import replay
from ml.lake.delta import DeltaStore
from ml.registry.model_registry import ModelRegistry, ModelVersion, gate_passed
from ml.text_tables import text_table
from orchestration.definitions import build_definitions
from orchestration.profiles import build_resources

FIRST, LAST = dt.date(2013, 1, 1), dt.date(2013, 12, 31)
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


def table_sizes(store: DeltaStore) -> str:
    months = pl.DataFrame({"month": pl.date_range(FIRST, LAST, "1mo", eager=True).dt.strftime("%Y-%m")})
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


def main() -> int:
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(Path(".dagster").resolve())))
    home.mkdir(parents=True, exist_ok=True)
    resources = build_resources(os.environ)
    landing = Path(resources["landing"].root)  # type: ignore[attr-defined]
    outcomes = replay(landing, FIRST, LAST)
    print(
        f"replayed {FIRST}..{LAST} into {landing}: {sum(o.status == 'written' for o in outcomes)} new file(s)"
    )
    defs = build_definitions()
    instance = dg.DagsterInstance.get()
    run(defs, instance, "reference_data")
    run(
        defs,
        instance,
        "daily_ingestion",
        range_tags(FIRST, LAST),
    )
    run(defs, instance, "online_snapshot")
    promoted = run(defs, instance, "train_evaluate_promote", must_succeed=False)
    store = resources["lake"].store()  # type: ignore[attr-defined]
    print("\n" + table_sizes(store))
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
