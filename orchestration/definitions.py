"""The code location: assembles assets, checks, jobs, schedules, sensors and resources."""

from __future__ import annotations

import os
from collections.abc import Mapping

import dagster as dg

from assets import bronze, deployment, features, freshness, monitoring, training
from orchestration.alerts import ALERT_SENSORS
from orchestration.executors import build_executor
from orchestration.freshness import DEFAULT_INTERVAL_SECONDS, freshness_job, freshness_sensor
from orchestration.jobs import (
    bronze_job,
    daily_ingestion_job,
    online_snapshot_job,
    reference_job,
    training_job,
)
from orchestration.maintenance import maintenance, maintenance_schedule
from orchestration.monitoring import monitoring_job, monitoring_schedule
from orchestration.profiles import build_resources
from orchestration.registry_jobs import champion_sync, rollback
from orchestration.retraining import DEFAULT_RETRAIN_CRON, retrain_sensor, weekly_retraining_schedule
from orchestration.schedules import DEFAULT_AT, daily_ingestion_schedule
from orchestration.sensors import features_automation_sensor, landing_sensor
from orchestration.shadow_jobs import shadow_verdict, shadow_verdict_schedule

ASSET_MODULES = [bronze, features, training, deployment, monitoring]
"""One module per asset-key prefix: `bronze/flights` is in `assets/bronze.py`, and its group is `bronze`."""


def build_definitions(env: Mapping[str, str] | None = None) -> dg.Definitions:
    env = os.environ if env is None else env
    return dg.Definitions(
        assets=dg.load_assets_from_modules(ASSET_MODULES),
        asset_checks=[*dg.load_asset_checks_from_modules(ASSET_MODULES), freshness.freshness],
        jobs=[
            reference_job,
            bronze_job,
            daily_ingestion_job,
            online_snapshot_job,
            training_job,
            maintenance,
            rollback,
            shadow_verdict,
            monitoring_job,
            freshness_job,
        ],
        schedules=[
            daily_ingestion_schedule(env.get("PLATFORM_DAILY_INGESTION_AT", DEFAULT_AT)),
            maintenance_schedule,
            monitoring_schedule,
            shadow_verdict_schedule,
            weekly_retraining_schedule(env.get("PLATFORM_RETRAIN_CRON", DEFAULT_RETRAIN_CRON)),
        ],
        sensors=[
            landing_sensor,
            features_automation_sensor,
            retrain_sensor,
            champion_sync,
            *ALERT_SENSORS,
            freshness_sensor(int(env.get("PLATFORM_FRESHNESS_INTERVAL_SECONDS", DEFAULT_INTERVAL_SECONDS))),
        ],
        resources=build_resources(env),
        executor=build_executor(env),
    )


defs = build_definitions()
