"""What `make simulate` saw and how it is judged: the timeline of runs and features, and the summary.

The simulation (`devtools.simulate`) drives the platform; this module only reads it: the
runs the webserver lists, the features' materializations, the registry, the alerts the
receiver got. A failure is explained when it is a quarantined file, the promotion gate,
or a failed start that was retried; everything else makes the simulation exit 1.
"""

from __future__ import annotations

import datetime as dt
import itertools
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from assets.partitions import RANGE_END, RANGE_START
from devtools import faults
from devtools.alert_receiver import AlertReceiver
from devtools.services import FINAL_RUN_STATUSES
from ml.lake.delta import DeltaStore
from ml.lake.tables import REGISTRY_MODELS
from ml.registry.model_registry import ModelRegistry
from orchestration.alerts import step_failures

FEATURES = dg.AssetKey(["features", "flight_features"])
TRAINING_JOB = "train_evaluate_promote"


@dataclass
class Timeline:
    start: float = field(default_factory=time.time)
    landed: dict[dt.date, float] = field(default_factory=dict)
    """When each day's (last) good flights file landed."""
    built: dict[dt.date, float] = field(default_factory=dict)
    """When each day's features were first built after that."""
    runs: dict[str, dict] = field(default_factory=dict)

    def say(self, text: str, at: float | None = None) -> None:
        print(f"[{(at or time.time()) - self.start:7.1f}s] {text}", flush=True)

    def of_job(self, job: str) -> list[dict]:
        return [r for r in self.runs.values() if r["jobName"] == job]

    def finished(self, job: str) -> bool:
        return any(r["status"] in FINAL_RUN_STATUSES for r in self.of_job(job))

    def freshness(self) -> list[float]:
        return [self.built[d] - self.landed[d] for d in self.landed if d in self.built]


def tags_of(run: dict) -> dict[str, str]:
    return {t["key"]: t["value"] for t in run["tags"]}


def describe(run: dict) -> str:
    tags = tags_of(run)
    assets = ", ".join("/".join(a["path"]) for a in run.get("assetSelection") or []) or run["jobName"]
    days = tags.get("dagster/partition") or "..".join(
        filter(None, (tags.get(RANGE_START), tags.get(RANGE_END)))
    )
    trigger = (
        tags.get("platform/trigger")
        or tags.get("dagster/sensor_name")
        or tags.get("dagster/schedule_name")
        or ""
    )
    if tags.get("dagster/from_automation_condition") or "automation" in trigger:
        trigger = "automation"
    if tags.get("dagster/parent_run_id"):
        trigger = f"retry of {tags['dagster/parent_run_id'][:8]}"
    return f"{assets}{' ' + days if days else ''}{' (' + trigger + ')' if trigger else ''}"


def unalerted(timeline: Timeline, receiver: AlertReceiver, quarantine: Path) -> list[str]:
    """Failed runs and quarantined files the receiver has no alert of: someone was not told."""
    alerted = {a.get("platform", {}).get("run_id") for a in receiver.of_kind("run_failure")}
    moved = {
        str(a.get("platform", {}).get("destination", "")).rsplit("/", 1)[-1]
        for a in receiver.of_kind("quarantine")
    }
    files = [p.name for p in quarantine.rglob("*") if p.is_file() and not p.name.endswith(".reason.json")]
    return [
        *(f"run {r}" for r, run in timeline.runs.items() if run["status"] == "FAILURE" and r not in alerted),
        *(f"quarantined {name}" for name in files if name not in moved),
    ]


def unexplained_failures(timeline: Timeline, instance: dg.DagsterInstance) -> dict[str, str]:
    """Failed runs that are not a quarantined file, the promotion gate, or a retried failed start."""
    retried = {
        tags_of(r).get("dagster/parent_run_id") for r in timeline.runs.values() if r["status"] == "SUCCESS"
    }
    unexplained = {}
    for run_id, run in timeline.runs.items():
        if run["status"] != "FAILURE" or run_id in retried:
            continue
        text = "\n".join(f.error for f in step_failures(instance, run_id))
        if "quarantined to" in text or "blocking asset check" in text.lower():
            continue
        unexplained[run_id] = text.splitlines()[0] if text else "no step failed (the run itself did)"
    return unexplained


def overlapping_trainings(timeline: Timeline) -> list[tuple[str, str]]:
    spans = sorted(
        (r["startTime"], r.get("endTime") or time.time(), r["runId"])
        for r in timeline.of_job(TRAINING_JOB)
        if r.get("startTime")
    )
    return [(a[2], b[2]) for a, b in itertools.pairwise(spans) if b[0] < a[1]]


def report(
    timeline: Timeline,
    data: Path,
    instance: dg.DagsterInstance,
    receiver: AlertReceiver,
    steps: faults.Plan,
    served: tuple[int, int, str] | None,
) -> int:
    wanted = steps.final_days()
    fresh = timeline.freshness()
    print("\nsummary")
    print(f"- days landed: {len(wanted)}, features built: {len(wanted & set(timeline.built))}")
    if fresh:
        print(
            f"- freshness (landing -> features): p50 {statistics.median(fresh):.1f}s, max {max(fresh):.1f}s"
        )
    failed = [r for r, run in timeline.runs.items() if run["status"] == "FAILURE"]
    unexplained = unexplained_failures(timeline, instance)
    print(f"- runs: {len(timeline.runs)}, failed: {len(failed)}, unexplained failures: {len(unexplained)}")
    for run_id, why in unexplained.items():
        print(f"  - {run_id[:8]} {describe(timeline.runs[run_id])}: {why}")
    trainings = timeline.of_job(TRAINING_JOB)
    overlaps = overlapping_trainings(timeline)
    keys = sorted({tags_of(r).get("dagster/run_key", "") for r in trainings})
    print(
        f"- trainings: {len(trainings)} (run keys: {', '.join(k for k in keys if k) or 'none'}), overlapping: {len(overlaps)}"
    )
    store = DeltaStore(str(data / "lake"))
    registry = ModelRegistry(store)
    models = registry.versions() if store.exists(REGISTRY_MODELS) else []
    events = registry.events() if models else None
    promotions = 0 if events is None else events.filter(events["to_status"] == "champion").height
    print(f"- promotions: {promotions}")
    for m in models:
        auc = m.metrics.get("test", {}).get("roc_auc")
        gate = " (stopped by the promotion gate)" if m.status == "rejected" else ""
        print(
            f"- model v{m.version}: {m.status}{gate}"
            + (f", test ROC AUC {auc:.4f}" if auc is not None else "")
        )
    orphans = [m.version for m in models if m.status == "candidate"]
    kinds: dict[str, int] = {}
    for alert in receiver.alerts:
        kind = alert.get("platform", {}).get("kind", "other")
        kinds[kind] = kinds.get(kind, 0) + 1
    print(
        f"- alerts: {len(receiver.alerts)} ("
        + (", ".join(f"{k} {n}" for k, n in sorted(kinds.items())) or "none")
        + f"); quarantined files planned: {steps.quarantines}"
    )
    for check in _freshness_checks(instance):
        print(f"- freshness check {check}")
    if served is not None:
        refusal = f" (the last: {served[2]})" if served[2] else ""
        print(f"- model server: {served[0]} flights answered, {served[1]} refused{refusal}")
    untold = unalerted(timeline, receiver, data / "quarantine")
    if untold:
        print(f"- without an alert: {', '.join(untold)}")
    missing = sorted(wanted - set(timeline.built))
    if missing:
        print(f"- days without features: {', '.join(map(str, missing))}")
    if orphans:
        print(f"- candidates left unevaluated: {orphans}")
    return 1 if missing or unexplained or overlaps or orphans or untold else 0


def _freshness_checks(instance: dg.DagsterInstance) -> list[str]:
    lines = []
    for asset in (["bronze", "flights"], ["bronze", "weather"], ["features", "flight_features"]):
        key = dg.AssetCheckKey(dg.AssetKey(asset), "freshness")
        records = instance.event_log_storage.get_asset_check_execution_history(key, limit=1)
        if not records or records[0].event is None or records[0].event.dagster_event is None:
            lines.append(f"{'/'.join(asset)}: not run")
            continue
        evaluation = records[0].event.dagster_event.event_specific_data
        verdict = "passed" if evaluation.passed else "FAILED"
        lines.append(f"{'/'.join(asset)}: {verdict}, {evaluation.metadata['explanation'].value}")
    return lines
