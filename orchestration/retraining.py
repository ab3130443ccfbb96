"""Retraining follows a policy stated in config: new feature days, a weekly schedule, or monitoring signals.

One training at a time, twice over: the instance's run queue runs one run tagged
`TRAINING_RUN_TAGS` at a time (orchestration/instance/*.yaml), and neither the sensor
nor the schedule asks for another while one is unfinished, so a queue of trainings
never builds up behind a slow one. The sensor answers every unhandled signal with one
run whose key is the trigger and the data it would train on (`ml.training.retrain_policy`).
"""

from __future__ import annotations

import datetime as dt
import json

import dagster as dg
import polars as pl

from ml.lake.delta import DeltaStore
from ml.lake.tables import DRIFT_SIGNALS_TABLE, FEATURES_TABLE
from ml.registry.dvc_repo import PARAMS_FILE, TRAINING_SET_PATH
from ml.settings import NEW_YORK
from ml.training.params import cutoff, load_params, split_sizes
from ml.training.retrain_policy import Decision, DriftSignal, TrainingData, decide
from ml.training.training_set import MANIFEST, settled_cutoff
from orchestration.jobs import TRAINING_RUN_TAGS, training_job
from resources import DvcResource, LakeResource, RetrainPolicy

UNFINISHED = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]
"""A training run in one of these holds or waits for the one training slot. NOT_STARTED is
left out: a run the daemon created but never submitted would block retraining for good."""
SHOWN_RUNS = 5


def unfinished_training_runs(instance: dg.DagsterInstance) -> list[str]:
    """`run_id (STATUS)` of each training run queued, starting, running, or failed and about to be retried."""
    tags = dict(TRAINING_RUN_TAGS)
    runs = list(instance.get_runs(dg.RunsFilter(tags=tags, statuses=UNFINISHED), limit=SHOWN_RUNS))
    failed = instance.get_runs(dg.RunsFilter(tags=tags, statuses=[dg.DagsterRunStatus.FAILURE]), limit=1)
    runs += [r for r in failed if r.is_complete_and_waiting_to_retry]
    return [f"{r.run_id} ({r.status.value}{', to be retried' if r.is_failure else ''})" for r in runs]


def _last_cutoff(dvc: DvcResource) -> dt.date | None:
    manifest = dvc.path(TRAINING_SET_PATH) / MANIFEST
    if not manifest.exists():
        return None
    return dt.date.fromisoformat(json.loads(manifest.read_text())["cutoff"])


def _training_data(store: DeltaStore, dvc: DvcResource, days: list[dt.date]) -> TrainingData | None:
    """The cutoff the training set would take and the features' version: params.yaml's cutoff, else
    the latest day whose validation and test days have all been built (`settled_cutoff`): the
    promotion gate judges a candidate on those days, so they must be whole."""
    version = store.version(FEATURES_TABLE)
    if version is None or not days:
        return None
    path = dvc.path(PARAMS_FILE)
    params = load_params(path) if path.exists() else {}
    fixed = cutoff(params)
    sizes = split_sizes(params) if params.get("training_set") else None
    day = fixed or settled_cutoff(days, sizes.validation_days + sizes.test_days if sizes else 1)
    return TrainingData(day, version) if day else None


def _unhandled_signals(store: DeltaStore, handled: set[str]) -> list[DriftSignal]:
    if not store.exists(DRIFT_SIGNALS_TABLE):
        return []
    rows = store.read(DRIFT_SIGNALS_TABLE).sort("raised_at").iter_rows(named=True)
    return [DriftSignal(r["key"], r["detail"]) for r in rows if r["key"] not in handled]


def run_tags(decision: Decision) -> dict[str, str]:
    """What the run says about why it runs: trigger, data, the signals it answers and the reason."""
    tags = {"platform/trigger": decision.trigger, "platform/reason": decision.reason}
    if decision.data is not None:
        tags["platform/training_data"] = decision.data.key
    if decision.signals:
        tags["platform/signals"] = " ".join(s.key for s in decision.signals)
    return tags


@dg.sensor(
    name="retrain_sensor",
    job=training_job,
    minimum_interval_seconds=30,
    description="Asks for train -> evaluate -> promote when the retraining policy says so, "
    "one training at a time.",
)
def retrain_sensor(
    context: dg.SensorEvaluationContext, lake: LakeResource, dvc: DvcResource, retrain_policy: RetrainPolicy
) -> dg.SensorResult | dg.SkipReason:
    store = lake.store()
    days: list[dt.date] = []
    if store.exists(FEATURES_TABLE):
        days = (
            store.scan(FEATURES_TABLE).select(pl.col("flight_date").unique()).collect().to_series().to_list()
        )
    handled = set(json.loads(context.cursor)) if context.cursor else set()
    drift = _unhandled_signals(store, handled) if retrain_policy.on_drift else []
    decision = decide(
        days,
        _last_cutoff(dvc),
        retrain_policy.new_feature_days,
        drift,
        _training_data(store, dvc, days),
        unfinished_training_runs(context.instance),
    )
    if not decision.retrain:
        return dg.SkipReason(decision.reason)
    context.log.info(f"retraining ({decision.run_key}): {decision.reason}")
    cursor = sorted(handled | {s.key for s in decision.signals})
    return dg.SensorResult(
        run_requests=[dg.RunRequest(run_key=decision.run_key, tags=run_tags(decision))],
        cursor=json.dumps(cursor),
    )


DEFAULT_RETRAIN_CRON = "0 5 * * 1"


def weekly_retraining_schedule(cron: str = DEFAULT_RETRAIN_CRON) -> dg.ScheduleDefinition:
    """Train, evaluate and promote on `cron` (default Mondays 05:00), New York time, unless a training is unfinished."""

    @dg.schedule(
        name="weekly_retraining",
        job=training_job,
        cron_schedule=cron,
        execution_timezone=NEW_YORK,
        description=f"Train, evaluate and promote on the schedule `{cron}` (New York time), "
        "unless a training run is queued or running.",
    )
    def weekly_retraining(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        unfinished = unfinished_training_runs(context.instance)
        if unfinished:
            return dg.SkipReason(f"a training run is queued or running: {', '.join(unfinished)}")
        return dg.RunRequest(tags={"platform/trigger": "schedule"})

    return weekly_retraining
