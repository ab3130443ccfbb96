"""The maintenance job: compact small files, vacuum old ones, checkpoint the Delta log."""

import dagster as dg
from pydantic import Field

from ml.registry.model_registry import ModelRegistry
from ml.text_tables import text_table
from resources import LakeResource

LAKE_TABLES = (
    "registry/models",
    "registry/events",
    "bronze/airports",
    "bronze/airlines",
    "bronze/planes",
    "bronze/flights",
    "bronze/flights_rejects",
    "bronze/flights_landing_log",
    "bronze/weather",
    "bronze/weather_rejects",
    "bronze/weather_landing_log",
    "features/flight_features",
    # Appended to in small batches by every server replica and monitoring run: compaction
    # keeps them from turning into thousands of tiny files.
    "monitoring/predictions",
    "monitoring/drift",
    "monitoring/live_performance",
    "monitoring/drift_signals",
)


class MaintenanceConfig(dg.Config):
    retention_hours: int = Field(
        default=168,
        ge=0,
        description="Files no longer referenced for this long are deleted by vacuum.",
    )


@dg.op(description="OPTIMIZE (compact) and VACUUM every lake table that exists.")
def compact_and_vacuum(context: dg.OpExecutionContext, config: MaintenanceConfig, lake: LakeResource) -> None:
    store = lake.store()
    needed = ModelRegistry(store).needed_versions()
    rows = []
    for table in LAKE_TABLES:
        if not store.exists(table):
            context.log.info(f"{table}: no table yet, skipped")
            continue
        keep = sorted(needed.get(table, set()))
        if keep:
            context.log.info(f"{table}: keeping versions {keep}, which registered models were trained from")
        stats = store.maintain(table, config.retention_hours, keep)
        context.log.info(f"{table}: {stats}")
        rows.append({"table": table, **stats})
    context.log.info(
        f"maintained {len(rows)} table(s) with retention {config.retention_hours}h\n{text_table(rows)}"
    )


@dg.job(description="Weekly Delta maintenance of the lake.", tags={"dagster/max_retries": "0"})
def maintenance() -> None:
    compact_and_vacuum()


maintenance_schedule = dg.ScheduleDefinition(
    name="weekly_maintenance",
    job=maintenance,
    cron_schedule="0 3 * * 0",
    execution_timezone="America/New_York",
    default_status=dg.DefaultScheduleStatus.STOPPED,
)
