"""`make simulate`: the platform as it lives in production, on the embedded default.

    python -m devtools.simulate [--days 14] [--interval 8] [--retrain-days 7] [--root .data/simulation]

The webserver and daemon run as processes on 127.0.0.1 over an instance of their own.
The replay tool drops one day of flights and weather into the landing zone every
`--interval` seconds; from there nothing is called by hand: the landing sensor requests
bronze runs, declarative automation builds the features, the retraining sensor asks for
train -> evaluate -> promote once `--retrain-days` new feature days are in. A timeline is
printed as it happens, and the simulation ends by itself once every day's features are
built and the runs are done (or at `--timeout`), with the freshness of each day.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from assets.partitions import RANGE_END, RANGE_START
from devtools.services import FINAL_RUN_STATUSES, PROJECT, DagsterServices, dagster_services
from ml.ingest.replay import replay
from ml.lake.delta import DeltaStore
from ml.registry.dvc_repo import init_pipeline_repo
from ml.registry.model_registry import ModelRegistry
from orchestration.definitions import build_definitions

FEATURES = dg.AssetKey(["features", "flight_features"])
SENSORS = ("landing_sensor", "features_automation", "retrain_sensor")


@dataclass
class Timeline:
    start: float = field(default_factory=time.time)
    landed: dict[dt.date, float] = field(default_factory=dict)
    built: dict[dt.date, float] = field(default_factory=dict)
    runs: dict[str, str] = field(default_factory=dict)
    jobs: dict[str, str] = field(default_factory=dict)

    def say(self, text: str, at: float | None = None) -> None:
        print(f"[{(at or time.time()) - self.start:7.1f}s] {text}", flush=True)

    def finished(self, job: str) -> bool:
        return any(
            self.jobs[run] == job and status in FINAL_RUN_STATUSES for run, status in self.runs.items()
        )

    def freshness(self) -> list[float]:
        return [self.built[d] - self.landed[d] for d in self.landed if d in self.built]


def describe(run: dict) -> str:
    tags = {t["key"]: t["value"] for t in run["tags"]}
    assets = ", ".join("/".join(a["path"]) for a in run.get("assetSelection") or []) or run["jobName"]
    days = tags.get("dagster/partition") or "..".join(
        filter(
            None,
            (tags.get(RANGE_START), tags.get(RANGE_END)),
        )
    )
    trigger = (
        tags.get("platform/trigger")
        or tags.get("dagster/sensor_name")
        or tags.get("dagster/schedule_name")
        or ""
    )
    if tags.get("dagster/from_automation_condition") or "automation" in trigger:
        trigger = "automation"
    return f"{assets}{' ' + days if days else ''}{' (' + trigger + ')' if trigger else ''}"


def follow(services: DagsterServices, instance: dg.DagsterInstance, timeline: Timeline) -> bool:
    """Print what changed; True while a run is queued or in flight."""
    busy = False
    for run in reversed(services.runs()):
        status = run["status"]
        busy |= status not in FINAL_RUN_STATUSES
        if timeline.runs.get(run["runId"]) != status:
            timeline.runs[run["runId"]] = status
            timeline.jobs[run["runId"]] = run["jobName"]
            at = run.get("endTime") if status in FINAL_RUN_STATUSES else run.get("startTime")
            timeline.say(f"run {run['runId'][:8]} {status.lower():9} {describe(run)}", at)
    for record in instance.fetch_materializations(FEATURES, limit=1000).records:
        partition = record.asset_materialization.partition if record.asset_materialization else None
        if partition and dt.date.fromisoformat(partition) not in timeline.built:
            day = dt.date.fromisoformat(partition)
            timeline.built[day] = record.timestamp
            if day in timeline.landed:
                timeline.say(
                    f"features of {day} built, {record.timestamp - timeline.landed[day]:.1f}s after it landed"
                )
    return busy


def simulate(
    root: Path, first: dt.date, days: int, interval: float, retrain_days: int, timeout: float
) -> int:
    shutil.rmtree(root, ignore_errors=True)
    data, repo = root / "data", root / "repo"
    span = max(1, days // 7)
    init_pipeline_repo(
        repo,
        PROJECT,
        root / "dvc-remote",
        {
            "training_set": {"validation_days": span, "test_days": span, "cutoff": ""},
            "train": {"max_epochs": 3},
        },
    )
    env = {
        "PLATFORM_DATA_DIR": str(data),
        "PLATFORM_REPO_ROOT": str(repo),
        "PLATFORM_LANDING_SETTLE_SECONDS": "1",
        "PLATFORM_RETRAIN_NEW_DAYS": str(retrain_days),
    }
    landing = data / "landing"
    replay(landing, first, first, datasets=())  # reference files only
    timeline = Timeline()
    with dagster_services(root, env) as services:
        timeline.say(f"webserver on {services.url}, daemon running; instance in {services.home}")
        instance = dg.DagsterInstance.from_config(str(services.home))
        defs = build_definitions(env)
        if not defs.resolve_job_def("reference_data").execute_in_process(instance=instance).success:
            raise SystemExit("reference data could not be materialized")
        for sensor in SENSORS:
            services.start_sensor(sensor)
        timeline.say(f"sensors on: {', '.join(SENSORS)}")
        # Days land on their schedule; otherwise this loop only watches, once a second, until
        # everything is done or the deadline passes.
        deadline = time.time() + timeout
        next_drop, dropped = time.time(), 0
        pending = ["the first day to land"]
        while time.time() < deadline:
            if dropped < days and time.time() >= next_drop:
                day = first + dt.timedelta(days=dropped)
                replay(landing, day, day)
                timeline.landed[day] = time.time()
                timeline.say(f"landed flights and weather of {day}")
                dropped, next_drop = dropped + 1, next_drop + interval
            busy = follow(services, instance, timeline)
            unbuilt = [str(d) for d in timeline.landed if d not in timeline.built]
            trained = retrain_days == 0 or days < retrain_days or timeline.finished("train_evaluate_promote")
            pending = [
                *([f"{days - dropped} day(s) to land"] if dropped < days else []),
                *([f"the features of {', '.join(unbuilt)}"] if unbuilt else []),
                *([] if trained else ["a finished train_evaluate_promote run"]),
                *(["the runs in flight to end"] if busy else []),
            ]
            if not pending:
                break
            time.sleep(1)
        else:
            timeline.say(f"timed out after {timeout:.0f}s waiting for {'; '.join(pending)}")
        follow(services, instance, timeline)
    return report(timeline, data)


def report(timeline: Timeline, data: Path) -> int:
    fresh = timeline.freshness()
    print("\nsummary")
    print(f"- days landed: {len(timeline.landed)}, features built: {len(timeline.built)}")
    if fresh:
        print(
            f"- freshness (landing -> features): p50 {statistics.median(fresh):.1f}s, max {max(fresh):.1f}s"
        )
    failed = [r for r, s in timeline.runs.items() if s == "FAILURE"]
    print(f"- runs: {len(timeline.runs)}, failed: {len(failed)}")
    store = DeltaStore(str(data / "lake"))
    models = ModelRegistry(store).versions() if store.exists("registry/models") else []
    for m in models:
        auc = m.metrics.get("test", {}).get("roc_auc")
        gate = " (stopped by the promotion gate)" if m.status == "rejected" else ""
        print(
            f"- model v{m.version}: {m.status}{gate}"
            + (f", test ROC AUC {auc:.4f}" if auc is not None else "")
        )
    # A training run that the gate stopped failed as designed: its model is registered as rejected.
    rejected = sum(m.status == "rejected" for m in models)
    gate_stops = [r for r in failed if timeline.jobs[r] == "train_evaluate_promote"][:rejected]
    missing = [d for d in timeline.landed if d not in timeline.built]
    return 1 if missing or len(failed) > len(gate_stops) else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.simulate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path(".data/simulation"), help="replaced at the start")
    parser.add_argument("--first", type=dt.date.fromisoformat, default=dt.date(2013, 1, 1))
    parser.add_argument("--days", type=int, default=14, help="days to land (bounded: the run ends by itself)")
    parser.add_argument("--interval", type=float, default=8.0, help="seconds between two landed days")
    parser.add_argument(
        "--retrain-days", type=int, default=7, help="new feature days that trigger retraining (0: off)"
    )
    parser.add_argument("--timeout", type=float, default=900.0, help="end here whatever is still running")
    args = parser.parse_args(argv)
    return simulate(
        args.root.resolve(), args.first, args.days, args.interval, args.retrain_days, args.timeout
    )


if __name__ == "__main__":
    sys.exit(main())
