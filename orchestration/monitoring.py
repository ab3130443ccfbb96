"""When monitoring runs: drift and realized quality once a day, after the morning's ingestion."""

import dagster as dg

monitoring_job = dg.define_asset_job(
    "monitoring",
    selection=dg.AssetSelection.groups("monitoring"),
    description="Feature drift against the training split and the served model's realized quality; "
    "a breach leaves a signal for the retraining sensor.",
)

monitoring_schedule = dg.ScheduleDefinition(
    name="daily_monitoring",
    job=monitoring_job,
    cron_schedule="30 7 * * *",
    execution_timezone="America/New_York",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Monitoring daily at 07:30 New York time, an hour after the daily ingestion.",
)
