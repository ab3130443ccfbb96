"""Retraining follows a policy stated in config: new feature days, a weekly schedule, or drift."""

from __future__ import annotations

import datetime as dt
import json

import dagster as dg
import polars as pl

from ml.lake.tables import DRIFT_SIGNALS_TABLE, FEATURES_TABLE
from ml.registry.dvc_repo import TRAINING_SET_PATH
from ml.settings import NEW_YORK
from ml.training.retrain_policy import DriftSignal, decide
from ml.training.training_set import MANIFEST
from orchestration.jobs import training_job
from resources import DvcResource, LakeResource, RetrainPolicy


def _last_cutoff(dvc: DvcResource) -> dt.date | None:
    manifest = dvc.path(TRAINING_SET_PATH) / MANIFEST
    if not manifest.exists():
        return None
    return dt.date.fromisoformat(json.loads(manifest.read_text())["cutoff"])


@dg.sensor(
    name="retrain_sensor",
    job=training_job,
    minimum_interval_seconds=30,
    description="Asks for train -> evaluate -> promote when the retraining policy says so.",
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
    drift: list[DriftSignal] = []
    if retrain_policy.on_drift and store.exists(DRIFT_SIGNALS_TABLE):
        rows = store.read(DRIFT_SIGNALS_TABLE).sort("raised_at").iter_rows(named=True)
        drift = [DriftSignal(r["key"], r["detail"]) for r in rows if r["key"] not in handled]
    decision = decide(days, _last_cutoff(dvc), retrain_policy.new_feature_days, drift)
    if not decision.retrain:
        return dg.SkipReason(decision.reason)
    context.log.info(f"retraining: {decision.reason}")
    cursor = sorted(handled | {s.key for s in drift[:1]})
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(run_key=decision.run_key, tags={"platform/trigger": decision.run_key.split(":")[0]})
        ],
        cursor=json.dumps(cursor),
    )


DEFAULT_RETRAIN_CRON = "0 5 * * 1"


def weekly_retraining_schedule(cron: str = DEFAULT_RETRAIN_CRON) -> dg.ScheduleDefinition:
    """Train, evaluate and promote on `cron` (default Mondays 05:00), New York time, whatever the sensor saw."""
    return dg.ScheduleDefinition(
        name="weekly_retraining",
        job=training_job,
        cron_schedule=cron,
        execution_timezone=NEW_YORK,
        tags={"platform/trigger": "schedule"},
        description=f"Train, evaluate and promote on the schedule `{cron}` (New York time).",
    )
