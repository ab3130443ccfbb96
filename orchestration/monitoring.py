"""When monitoring runs: drift and realized quality once a day, after the morning's ingestion."""

import dagster as dg

from orchestration.schedules import stopped_schedule

monitoring_job = dg.define_asset_job(
    "monitoring",
    selection=dg.AssetSelection.groups("monitoring"),
    description="Feature drift against the training split and the served model's realized quality; "
    "a breach leaves a signal for the retraining sensor.",
)

monitoring_schedule = stopped_schedule(
    "daily_monitoring",
    monitoring_job,
    "30 7 * * *",
    "Monitoring daily at 07:30 New York time, an hour after the daily ingestion.",
)
